"""Load on ``reid serve``: searches/s and latency per engine, with micro-batching on and off, while a writer adds
images.

A bounded test against 127.0.0.1 only. For each mode (``--max-batch 32``, then ``--max-batch 1``: one search at a
time) a real ``reid serve`` is started in its own process; 1, 8 and 32 clients then each upload a fixed number of
query images, one search per request, while one writer adds an image every ``--add-every`` seconds through the
API. It prints searches/s, p50 and p99 latency and the ratio of the two modes at each client count (measured in
the same run: these machines are noisy), then checks that every added image is in the gallery on disk and that
no request got a 5xx. Each engine (``--engines``: PyTorch, ONNX Runtime) runs both modes, and the ratio of the
engines is printed for each; ``--busy N`` runs N CPU-bound processes beside the servers (a busy machine).

The model is the README demo's (``--run runs/demo``) when it exists, else an untrained AttNet-XXS at the demo's
input size over a synthetic LLCM-layout dataset: the speed does not depend on the training.

    python benchmarks/bench_serve.py [--run runs/demo] [--clients 1,8,32] [--searches 24] [--out DIR]
        [--engines torch,onnxruntime] [--busy 0]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from reid.report import markdown_table


def demo_model(run: Path, work: Path) -> tuple[Path, Path, list[Path]]:
    """(checkpoint, gallery, query images): the demo run's, or an untrained stand-in made here."""
    from reid.data import load_dataset, make_dataset

    if (run / "best.pt").is_file() and (run / "gallery").is_dir():
        checkpoint, gallery = run / "best.pt", run / "gallery"
        import yaml

        root = Path(yaml.safe_load((run / "config.yaml").read_text())["data_root"])
        if not root.is_absolute():
            root = run.parent.parent / root
    else:
        import torch

        from reid.config import load_config
        from reid.engine.checkpoint import save_checkpoint
        from reid.engine.galleries import build_gallery
        from reid.engine.inference import Embedder
        from reid.models.reid_model import ReIDModel

        config = load_config("demo.yaml")
        root = make_dataset("llcm", work / "demo-llcm", 32, seed=0)
        torch.manual_seed(0)
        model = ReIDModel(config.backbone, 32, config.input_size)
        checkpoint = save_checkpoint(work / "best.pt", model, config.model_copy(update={"data_root": str(root)}),
                                     32, 0, None)
        gallery = work / "built-gallery"
        split = load_dataset("llcm", root).test_split("ir2vis", 0)
        build_gallery(Embedder.from_checkpoint(checkpoint), split.gallery).save(gallery)
    dataset = load_dataset("llcm", root)
    return checkpoint, gallery, [Path(s.path) for s in dataset.test_split("ir2vis", 0).query]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(checkpoint: Path, gallery: Path, token_file: Path, max_batch: int,
          engine: str = "torch") -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "reid", "serve", "--index", str(gallery), "--checkpoint",
                               str(checkpoint), "--device", "cpu", "--token-file", str(token_file), "--host",
                               "127.0.0.1", "--port", str(port), "--max-batch", str(max_batch), "--engine", engine],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"reid serve exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.3)
    server.kill()
    raise SystemExit("reid serve did not answer within two minutes")


async def load(base: str, clients: int, searches: int, images: list[bytes], adds: list[bytes], token: str,
               add_every: float) -> dict:
    """``clients`` concurrent clients of ``searches`` searches each, and one writer adding ``adds`` meanwhile."""
    latencies: list[float] = []
    statuses: list[int] = []
    added: list[int] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as http:

        async def client(number: int) -> None:
            for step in range(searches):
                image = images[(number * searches + step) % len(images)]
                started = time.perf_counter()
                response = await http.post("/api/v1/search", files=[("images", ("q.jpg", image))],
                                           data={"top_k": "10"})
                latencies.append(time.perf_counter() - started)
                statuses.append(response.status_code)

        async def writer() -> None:
            for image in adds:
                if done.is_set():
                    return
                response = await http.post("/api/v1/items", files=[("images", ("new.png", image))],
                                           data={"modality": "vis"}, headers={"Authorization": f"Bearer {token}"})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    added.extend(response.json()["item_ids"])
                await asyncio.sleep(add_every)

        started = time.perf_counter()
        writing = asyncio.create_task(writer())
        await asyncio.gather(*(client(number) for number in range(clients)))
        elapsed = time.perf_counter() - started
        done.set()
        await writing
    return {"elapsed": elapsed, "latencies": np.array(latencies), "statuses": statuses, "added": added}


def fresh_images(count: int, seed: int) -> list[bytes]:
    """Distinct small PNGs (a gallery adds an image's content once), for the writer."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 48, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a demo run (best.pt, gallery/)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--searches", type=int, default=24, help="searches per client")
    parser.add_argument("--add-every", type=float, default=0.5, help="seconds between the writer's adds")
    parser.add_argument("--out", type=Path, help="also write the table here (bench_serve.md)")
    parser.add_argument("--engines", default="torch", help="what runs the model: torch, onnxruntime (comma-separated)")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes running beside the servers")
    args = parser.parse_args()
    engines = args.engines.split(",")
    counts = [int(value) for value in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        checkpoint, source_gallery, queries = demo_model(args.run, work)
        images = [path.read_bytes() for path in queries]
        token = secrets.token_urlsafe(24)
        (work / "token").write_text(token + "\n")
        rows, failures, seed = [], [], 0
        rate: dict[tuple[str, int, int], float] = {}  # (engine, max batch, clients) -> searches/s
        competitors = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        plan = [(engine, mode, max_batch) for engine in engines
                for mode, max_batch in (("batched (--max-batch 32)", 32), ("one at a time (--max-batch 1)", 1))]
        for engine, mode, max_batch in plan:
            gallery = work / f"gallery-{engine}-{max_batch}"
            shutil.copytree(source_gallery, gallery)
            server, base = start(checkpoint, gallery, work / "token", max_batch, engine)
            try:
                asyncio.run(load(base, 2, 2, images, [], token, args.add_every))  # warm up
                for clients in counts:
                    seed += 1
                    result = asyncio.run(load(base, clients, args.searches, images, fresh_images(200, seed), token,
                                              args.add_every))
                    served = len(result["latencies"])
                    errors = sum(status >= 500 for status in result["statuses"])
                    refused = sum(400 <= status < 500 for status in result["statuses"])
                    rate[(engine, max_batch, clients)] = served / result["elapsed"]
                    rows.append([engine, mode, str(clients), str(served), f"{served / result['elapsed']:.1f}",
                                 f"{1000 * np.percentile(result['latencies'], 50):.0f}",
                                 f"{1000 * np.percentile(result['latencies'], 99):.0f}", str(len(result["added"])),
                                 str(errors + refused)])
                    if errors or refused:
                        failures.append(f"{engine}, {mode}, {clients} clients: {errors} 5xx and {refused} 4xx answers")
                    on_disk = check_added(gallery, result["added"])
                    if on_disk:
                        failures.append(f"{engine}, {mode}, {clients} clients: {on_disk}")
            finally:
                server.terminate()
                server.wait(timeout=30)
        for process in competitors:
            process.kill()
        table = markdown_table(["engine", "mode", "clients", "searches", "searches/s", "p50 ms", "p99 ms",
                                "images added", "4xx/5xx"], rows)

        def plural(clients: int) -> str:
            return f"{clients} client{'s' if clients > 1 else ''}"

        ratios = [f"{engine}: micro-batching vs one at a time, searches/s: " + ", ".join(
            f"{plural(clients)} {rate[(engine, 32, clients)] / rate[(engine, 1, clients)]:.2f}x" for clients in counts)
            for engine in engines]
        ratios += [f"{engine} vs {engines[0]}, {mode}: " + ", ".join(
            f"{plural(clients)} {rate[(engine, batch, clients)] / rate[(engines[0], batch, clients)]:.2f}x"
            for clients in counts) for engine in engines[1:] for mode, batch in (("batched", 32), ("one at a time", 1))]
        print(table)
        print("\n" + "\n".join(ratios))
        print(f"{'idle' if not args.busy else f'{args.busy} CPU-bound processes beside the servers'}")
        model = checkpoint if args.run in checkpoint.parents else "an untrained AttNet-XXS (no demo run at --run)"
        print(f"machine: {os.cpu_count()} CPUs; model: {model}")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "bench_serve.md").write_text(table + "\n\n" + "\n".join(ratios) + "\n")
        if failures:
            raise SystemExit("FAILED: " + "; ".join(failures))
        print("every added image is in the gallery on disk; no request got a 4xx or 5xx")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_added(gallery: Path, item_ids: list[int]) -> str | None:
    """None when every added item is live in the gallery on disk, else what is missing."""
    from reid.index import Gallery

    loaded = Gallery.load(gallery)
    missing = [item for item in item_ids if loaded.item(item) is None]
    if len(set(item_ids)) != len(item_ids):
        return f"item ids given twice: {sorted(item_ids)}"
    return f"added items missing on disk: {missing}" if missing else None


if __name__ == "__main__":
    main()
