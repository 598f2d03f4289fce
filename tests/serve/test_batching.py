"""The micro-batcher on its own: what arrives together runs together, in order, within its bounds."""
import asyncio
import time

import pytest

from reid.serve.batching import MicroBatcher


def run_together(batcher, items):
    async def main():
        return await asyncio.gather(*(batcher.submit(item) for item in items))

    return asyncio.run(main())


def test_items_that_arrive_together_form_one_batch_and_keep_their_order():
    seen = []

    def double(batch):
        seen.append(list(batch))
        return [2 * item for item in batch]

    batcher = MicroBatcher(double, max_batch=32, max_wait=0.05)
    assert run_together(batcher, range(10)) == [2 * i for i in range(10)]
    assert seen == [list(range(10))] and list(batcher.batches) == [10]


def test_a_batch_holds_at_most_max_batch_images():
    batcher = MicroBatcher(lambda batch: list(batch), size=lambda item: item[1], max_batch=5, max_wait=0.05)
    items = [(n, 2) for n in range(6)]  # two images each: two fit in five, a third would not
    assert run_together(batcher, items) == items
    assert list(batcher.batches) == [2, 2, 2]
    whole = MicroBatcher(lambda batch: list(batch), size=lambda item: item[1], max_batch=5, max_wait=0.05)
    assert run_together(whole, [(0, 9), (1, 1)]) == [(0, 9), (1, 1)]  # one too large for a batch still runs
    assert list(whole.batches) == [1, 1]


def test_max_batch_one_is_one_item_at_a_time():
    batcher = MicroBatcher(lambda batch: [len(batch)] * len(batch), max_batch=1, max_wait=0.05)
    assert run_together(batcher, range(5)) == [1] * 5 and list(batcher.batches) == [1] * 5


def test_a_lone_item_waits_no_longer_than_max_wait():
    batcher = MicroBatcher(lambda batch: list(batch), max_batch=32, max_wait=0.05)
    started = time.monotonic()
    assert run_together(batcher, [7]) == [7]
    assert time.monotonic() - started < 5  # bounded: not waiting for a full batch


def test_a_failing_batch_fails_its_items_and_the_batcher_goes_on():
    def picky(batch):
        if "bad" in batch:
            raise ValueError("bad input in the batch")
        return list(batch)

    batcher = MicroBatcher(picky, max_batch=32, max_wait=0.05)

    async def main():
        failed = await asyncio.gather(batcher.submit("bad"), batcher.submit("good"), return_exceptions=True)
        after = await batcher.submit("fine")
        return failed, after

    failed, after = asyncio.run(main())
    assert all(isinstance(result, ValueError) for result in failed) and after == "fine"


def test_a_new_event_loop_gets_a_new_worker():
    batcher = MicroBatcher(lambda batch: list(batch), max_wait=0.01)
    assert run_together(batcher, [1]) == [1]
    assert run_together(batcher, [2]) == [2]  # the first loop is closed; the batcher follows the new one


@pytest.mark.parametrize("max_wait", [0.0, 0.01])
def test_no_wait_still_answers(max_wait):
    batcher = MicroBatcher(lambda batch: list(batch), max_wait=max_wait)
    assert run_together(batcher, range(3)) == [0, 1, 2]
