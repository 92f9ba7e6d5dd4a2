"""Audio LM streaming step (lm/generate.py): milliseconds per frame (one user frame in, one system frame out,
batch 1) for ``tiny`` and ``125m``, on one CPU core (``torch.set_num_threads(1)``), and on the GPU in bf16 when CUDA
is there. min, mean, p50 and p95 over the frames (on a shared machine min is the least disturbed figure). Speed
does not depend on the weights: untrained models of each size. Q and K default to our codec's (8 x 1024);
``--text-vocab`` adds a text stream. The training figures are in benchmarks/lm.py.

Usage: python benchmarks/lm_stream.py [--sizes tiny,125m] [--frames 100] [--text-vocab 0] [--threads 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def stream_latency(size: str, dev: torch.device, frames: int, q: int, k: int, text_vocab: int,
                   dtype: torch.dtype = torch.float32) -> dict:
    from lm import AudioLM, LMConfig
    from lm.generate import init_state, step

    torch.manual_seed(0)
    cfg = LMConfig.preset(size, num_codebooks=q, codebook_size=k, text_vocab=text_vocab)
    model = AudioLM(cfg).to(dev, dtype).eval()
    g = torch.Generator().manual_seed(0)
    user = torch.randint(0, k, (frames + 10, 1, q), generator=g).to(dev)
    state = init_state(model, 1, seed=0)
    for i in range(10):  # warm-up: allocator, kernel choice
        step(model, state, user[i])
    _sync(dev)
    ms = []
    for i in range(frames):
        t0 = time.perf_counter()
        step(model, state, user[10 + i])
        _sync(dev)
        ms.append(1000 * (time.perf_counter() - t0))
    ms.sort()
    return {"size": size, "device": str(dev), "dtype": str(dtype).removeprefix("torch."), "Q": q, "K": k,
            "text_vocab": text_vocab, "params_M": round(model.num_params() / 1e6, 1), "frames": frames,
            "min_ms": round(ms[0], 2), "mean_ms": round(statistics.fmean(ms), 2), "p50_ms": round(ms[len(ms) // 2], 2),
            "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2)}


def run(args) -> list[dict]:
    rows = []
    torch.set_num_threads(args.threads)
    for size in args.sizes.split(","):
        n = args.frames if size == "tiny" else max(20, args.frames // 2)
        rows.append(stream_latency(size, torch.device("cpu"), n, args.q, args.k, args.text_vocab))
        print(json.dumps(rows[-1]), flush=True)
        if torch.cuda.is_available():
            rows.append(stream_latency(size, torch.device("cuda"), args.frames, args.q, args.k, args.text_vocab,
                                       torch.bfloat16))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,125m")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--q", type=int, default=8)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--text-vocab", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    out = {"load_avg_1m": round(os.getloadavg()[0], 2), "torch": torch.__version__}
    out["stream"] = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    print(json.dumps({"load_avg_1m": out["load_avg_1m"]}))


if __name__ == "__main__":
    main()
