"""Codec quality after training: train one or more codec variants side by side on the same data, then score each on
held-out audio (mel distance, SI-SDR, STOI, PESQ-WB, bitrate, codebook use, encode/decode speed).

The data are ingest outputs (segment shards). Held-out audio should come from other voices/recordings than the
training data, e.g. a synthetic run with other espeak-ng voices::

    matalu ingest --dialogs 400 --out data/codec-train
    matalu ingest --dialogs 16 --option seed=99 --voices espeak:te+f4,te+m3 \\
        --out data/codec-heldout --sources-dir data/sources-heldout
    python benchmarks/codec_quality.py --data data/codec-train --heldout data/codec-heldout --steps 2000 \\
        --variant base --variant base:strides=2,4,5,8 [--gpu] [--threads 1] [--json OUT]

A variant is ``SIZE[:key=value[;key=value]]`` with CodecConfig overrides (``strides`` as a comma list). Training is
resumable: each variant checkpoints under ``--out/<variant>`` and a rerun with more ``--steps`` continues it.
Every variant gets the same seed, batches and learning rate.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_variant(spec: str) -> tuple[str, dict]:
    size, _, rest = spec.partition(":")
    over: dict = {}
    for kv in filter(None, rest.split(";")):
        k, _, v = kv.partition("=")
        if k == "strides":
            over[k] = [int(x) for x in v.split(",")]
        else:
            over[k] = json.loads(v)
    return size, over


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="training segment shards (an ingest output)")
    ap.add_argument("--heldout", required=True, help="held-out segment shards (an ingest output)")
    ap.add_argument("--variant", action="append", default=[], help="SIZE[:key=value;...] (repeatable)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--segment", type=float, default=0.5, help="crop seconds")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--adversarial", action="store_true")
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs)")
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument("--eval-seconds", type=float, default=6.0)
    ap.add_argument("--out", default="data/codec-quality", help="checkpoints of each variant under OUT/<variant>")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    from codec.eval import evaluate
    from codec.model import num_params
    from codec.train import CodecTrainConfig, train_local

    torch.set_num_threads(a.threads)
    device = "cuda" if a.gpu else "cpu"
    rows = []
    for spec in a.variant or ["base"]:
        size, over = parse_variant(spec)
        cfg = CodecTrainConfig(size=size, model=over, batch_size=a.batch, segment_s=a.segment, lr=a.lr,
                               ckpt_every=max(100, a.steps // 10), keep_checkpoints=2, pool_size=512,
                               adversarial=a.adversarial, use_gpu=a.gpu)
        out = str(Path(a.out) / re.sub(r"[^A-Za-z0-9_.-]+", "_", spec))
        t0 = time.perf_counter()
        res = train_local(cfg, a.data, a.steps, out=out, device=device,
                          log=lambda m, spec=spec: print(f"  [{spec}] step {m['step']} loss {m['loss']:.3f} mel {m['mel']:.3f}",
                                              flush=True) if m["step"] % 100 == 0 else None)
        train_s = time.perf_counter() - t0
        r = evaluate(res.model, a.heldout, max_samples=a.eval_samples, max_seconds=a.eval_seconds, device=device)
        row = {"variant": spec, "params_M": round(num_params(res.model) / 1e6, 2), "steps": res.step,
               "trained_now": res.step - res.resumed_from, "train_s": round(train_s, 1),
               "step_s": round(train_s / max(res.step - res.resumed_from, 1), 3), "codec_id": res.model.codec_id,
               **{k: r[k] for k in ("mel_distance", "si_sdr", "stoi", "pesq_wb", "bitrate_bps",
                                    "encode_x_realtime", "decode_x_realtime")},
               "codebook_usage": r["codebook_usage"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'variant':28} {'params':>7} {'steps':>6} {'s/step':>7} {'mel':>6} {'SI-SDR':>7} {'STOI':>6} {'PESQ':>6} "
          f"{'enc x':>6} {'dec x':>6}")
    for r in rows:
        print(f"{r['variant']:28} {r['params_M']:>6}M {r['steps']:>6} {r['step_s']:>7} {r['mel_distance']:>6.3f} "
              f"{r['si_sdr']:>7.1f} {r['stoi']:>6.3f} {r['pesq_wb'] or float('nan'):>6.2f} "
              f"{r['encode_x_realtime']:>6.1f} {r['decode_x_realtime']:>6.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
