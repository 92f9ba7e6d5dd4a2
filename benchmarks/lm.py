"""LM training overheads: Ray Train vs a plain PyTorch DDP loop, and the loader vs what training consumes.

1. **Ray Train vs plain PyTorch**: the same training loop (lm/train.py ``_loop``: same model, data, batch, DDP over
   gloo or nccl) run twice in this process's session: by Ray Train's ``TorchTrainer`` with ``--workers`` workers, and
   by ``torch.multiprocessing`` with the same number of processes and ``init_process_group`` by hand. Step time =
   the median of the logged ``step_s`` after the first ``--warmup`` steps (each logged value averages
   ``log_every`` steps). Goal: Ray / plain <= 1.03.
2. **Loader vs training**: frames/s of the packed loader on one thread (``PackedStream``, no model) against the
   frames/s one training worker consumed in (1). Goal >= 10x.
3. **Ray Data for comparison** (``--ray-data``): ``ray.data.read_webdataset`` over the same shards, decoding each
   sample's codes, rows/s and frames/s, to back the choice of the plain iterator (lm/data.py).

Data: token shards written like ``matalu encode``'s (``tests/lm/tokens.py``), dialog/mono mix, Q=8, K=1024,
frames like the demo's 10-60 s dialogs at ``--frame-rate``.

Usage: python benchmarks/lm.py [--size tiny] [--workers 2] [--steps 40] [--batch 4] [--gpu] [--ray-data] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_tokens(root: str, frame_rate: float) -> None:
    from tests.lm.tokens import write_token_shards

    lo, hi = int(10 * frame_rate), int(60 * frame_rate)
    write_token_shards(root, [24, 30, 18, 27, 22, 31, 20, 25], Q=8, K=1024, frame_rate=frame_rate, frames=(lo, hi),
                       text=False)


def step_times(out: str, warmup: int) -> list[float]:
    lines = [json.loads(x) for x in Path(out, "metrics.jsonl").read_text().splitlines()]
    return [m["step_s"] for m in lines if m["step"] > warmup]


def frames_per_worker(out: str, warmup: int, workers: int) -> float:
    lines = [json.loads(x) for x in Path(out, "metrics.jsonl").read_text().splitlines()]
    return statistics.median(m["frames_per_s"] for m in lines if m["step"] > warmup) / workers


def run_plain(size: str, cfg, workers: int) -> float:
    from lm.train import train_spawn

    t0 = time.perf_counter()
    train_spawn({}, size, cfg, workers)
    return time.perf_counter() - t0


def run_ray(size: str, cfg) -> float:
    from lm.train import train_ray

    t0 = time.perf_counter()
    r = train_ray({}, size, cfg)
    if r.error is not None:
        raise RuntimeError(f"Ray Train run failed: {r.error}")
    return time.perf_counter() - t0


def loader_rate(data: str, context: int, batch: int, silence: int, n_batches: int) -> float:
    from lm.data import PackedStream, probe, token_shards

    shards = token_shards(data)
    st = PackedStream(shards, probe(shards), context=context, batch_size=batch, silence_code=silence)
    it = iter(st)
    next(it)  # first shard read
    t0 = time.perf_counter()
    frames = sum(b.codes.shape[0] * b.codes.shape[2] for b in itertools.islice(it, n_batches))
    return frames / (time.perf_counter() - t0)


def ray_data_rate(data: str) -> dict:
    import io

    import numpy as np
    import ray

    from lm.data import token_shards

    shards = token_shards(data)
    ds = ray.data.read_webdataset(shards, decoder=None)
    t0 = time.perf_counter()
    rows = frames = 0
    for batch in ds.iter_batches(batch_size=32, batch_format="pandas"):
        col = "codes.npy" if "codes.npy" in batch.columns else [c for c in batch.columns if "codes" in c][0]
        for b in batch[col]:
            a = b if isinstance(b, np.ndarray) else np.load(io.BytesIO(b))
            frames += a.shape[-1]
            rows += 1
    dt = time.perf_counter() - t0
    return {"rows_per_s": rows / dt, "frames_per_s": frames / dt, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per CPU worker")
    ap.add_argument("--frame-rate", type=float, default=50.0)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--ray-data", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    import ray

    from jobs.cluster import init_ray
    from lm.config import LMConfig
    from lm.train import LMTrainConfig

    work = tempfile.mkdtemp(prefix="matalu-bench-lm-")
    try:
        data = os.path.join(work, "tokens")
        make_tokens(data, args.frame_rate)
        base = dict(steps=args.steps, batch_size=args.batch, data=data, ckpt_every=10**9, log_every=5, val_every=0,
                    val_fraction=0.0, warmup_steps=5, num_workers=args.workers, use_gpu=args.gpu,
                    threads_per_worker=args.threads, keep_checkpoints=1)
        res: dict = {"size": args.size, "workers": args.workers, "steps": args.steps, "batch_per_worker": args.batch,
                     "device": "cuda" if args.gpu else f"cpu ({args.threads} thread/worker)"}
        init_ray(None, None if args.gpu else max(2, args.workers * args.threads))
        wall_ray = run_ray(args.size, LMTrainConfig(**base, out=os.path.join(work, "ray")))
        wall_plain = run_plain(args.size, LMTrainConfig(**base, out=os.path.join(work, "plain")), args.workers)
        ray_s = statistics.median(step_times(os.path.join(work, "ray"), args.warmup))
        plain_s = statistics.median(step_times(os.path.join(work, "plain"), args.warmup))
        res.update({"ray_step_s": ray_s, "plain_step_s": plain_s, "ray_over_plain": ray_s / plain_s,
                    "ray_wall_s": wall_ray, "plain_wall_s": wall_plain})
        consumed = frames_per_worker(os.path.join(work, "ray"), args.warmup, args.workers)
        ctx = LMConfig.preset(args.size).context
        lrate = loader_rate(data, ctx, args.batch, 1025, 200)
        res.update({"train_frames_per_s_per_worker": consumed, "loader_frames_per_s": lrate,
                    "loader_over_training": lrate / consumed})
        if args.ray_data:
            res["ray_data"] = ray_data_rate(data)
        print(f"[bench lm] {args.size}, {args.workers} workers, batch {args.batch}x{ctx} frames per worker:")
        print(f"  step time: Ray Train {ray_s * 1000:.1f} ms, plain torch DDP {plain_s * 1000:.1f} ms "
              f"-> {res['ray_over_plain']:.3f}x (goal <= 1.03)")
        print(f"  loader: {lrate:,.0f} frames/s on one thread vs training {consumed:,.0f} frames/s per worker "
              f"-> {res['loader_over_training']:.0f}x (goal >= 10)")
        if "ray_data" in res:
            print(f"  Ray Data read_webdataset: {res['ray_data']['frames_per_s']:,.0f} frames/s "
                  f"({res['ray_data']['rows_per_s']:.0f} samples/s)")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        ray.shutdown()
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
