"""Run directories: one training at a time, a run never trained over unless resumed (with what a resume may
change) or overwritten, and a refusal that leaves nothing behind."""
import multiprocessing

import pytest

from reid.config import load_config, make_config
from reid.errors import ReidError
from reid.runs import RunDirectory


def config(tmp_path, **changes):
    return make_config(dict(dataset="llcm", data_root=str(tmp_path), output_dir=str(tmp_path / "run"), epochs=4)
                       | changes)


def test_a_claim_writes_the_config_and_refuses_a_directory_that_holds_a_run(tmp_path):
    run = RunDirectory(tmp_path / "run")
    with run.claim(config(tmp_path), resume=False, overwrite=False) as (claimed, notes):
        assert notes == [] and load_config(run.config) == claimed
    run.last.write_bytes(b"a run")
    with pytest.raises(ReidError, match="already holds a run \\(last.pt\\); continue it with --resume"), \
            run.claim(config(tmp_path), resume=False, overwrite=False):
        pass
    with run.claim(config(tmp_path, seed=3), resume=False, overwrite=True) as (claimed, _):
        assert not run.last.exists() and claimed.seed == 3  # the old run's files went


def test_a_resume_takes_what_a_resumed_run_may_change_and_refuses_the_rest(tmp_path):
    run = RunDirectory(tmp_path / "run")
    with run.claim(config(tmp_path), resume=False, overwrite=False):
        run.last.write_bytes(b"a run")
    with run.claim(config(tmp_path, lr=1e-4, epochs=9), resume=True, overwrite=False) as (claimed, notes):
        assert claimed.lr == 1e-4 and claimed.epochs == 9
        assert notes == ["resuming with a changed setting: epochs: 4 -> 9",
                         "resuming with a changed setting: lr: 0.00035 -> 0.0001"]
    assert load_config(run.config).lr == 1e-4  # the run's config now says what it trains with
    changed = config(tmp_path, backbone="resnet50", seed=2, lr=1e-4, epochs=9)
    with pytest.raises(ReidError, match="cannot change: backbone \\('attnet_t1' -> 'resnet50'\\), seed \\(0 -> 2\\)"), \
            run.claim(changed, resume=True, overwrite=False):
        pass


def _hold(root, held, release):
    with RunDirectory(root).claim(make_config(dict(dataset="llcm", data_root=str(root.parent),
                                                   output_dir=str(root))), False, False):
        held.set()
        release.wait(60)


def test_a_second_training_in_the_same_directory_is_refused_naming_the_first(tmp_path):
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    first = context.Process(target=_hold, args=(tmp_path / "run", held, release))
    first.start()
    try:
        assert held.wait(60)
        refused = f"the run directory {tmp_path / 'run'} is in use by process {first.pid}"
        with pytest.raises(ReidError, match=refused), \
                RunDirectory(tmp_path / "run").claim(config(tmp_path), resume=False, overwrite=False):
            pass
    finally:
        release.set()
        first.join(60)
    with RunDirectory(tmp_path / "run").claim(config(tmp_path), resume=False, overwrite=True):
        pass  # free again once the first one ends


def test_a_refusal_leaves_nothing_the_claim_made(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.root.mkdir()
    run.last.write_bytes(b"a run")
    assert run.refusal(config(tmp_path), resume=False, overwrite=False).startswith(f"{run.root} already holds a run")
    with pytest.raises(ReidError, match="already holds a run"), run.claim(config(tmp_path), False, False):
        pass
    assert sorted(p.name for p in run.root.iterdir()) == ["last.pt"]  # no .lock, no .lock.owner, no config.yaml
