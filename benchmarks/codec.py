"""Codec speed: batched encode/decode × realtime per CPU core, and streaming latency per 80 ms chunk.

CPU figures use ``torch.set_num_threads(1)`` (one core); with ``torch.cuda.is_available()`` the same is measured
on the GPU too. Speed does not depend on the weights, so an untrained model of the chosen size is used unless
``--codec`` names a checkpoint.

Usage: python benchmarks/codec.py [--size base] [--seconds 10] [--batch 8] [--chunks 50] [--json OUT]
       [--strides 4,5,4,4 --strides 2,4,5,8 ...]   (each a variant of --size, measured side by side in one run)
"""

from __future__ import annotations

import argparse
import json
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


def _timed(fn, dev: torch.device, repeat: int) -> float:
    fn()  # warm-up (kernel selection, allocator)
    _sync(dev)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best


def bench(model, dev: torch.device, seconds: float, batch: int, chunks: int, repeat: int) -> dict:
    model = model.to(dev).eval()
    sr, hop = model.sample_rate, model.hop
    g = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(batch, 1, int(seconds * sr), generator=g)).to(dev)
    with torch.no_grad():
        codes = model.encode(x)
        t_enc = _timed(lambda: model.encode(x), dev, repeat)
        t_dec = _timed(lambda: model.decode(codes), dev, repeat)
    audio = batch * seconds
    # streaming, batch 1, 80 ms chunks (4 frames at 50 Hz)
    chunk = int(0.08 * sr)
    fpc = chunk // hop
    x1 = x[:1, :, : chunk * chunks]
    c1 = model.encode(x1)
    est = model.init_encode_state(1)
    model.encode_step(x1[..., :chunk], model.init_encode_state(1))  # warm-up
    enc_ms = []
    for i in range(chunks):
        _sync(dev)
        t0 = time.perf_counter()
        _, est = model.encode_step(x1[..., i * chunk : (i + 1) * chunk], est)
        _sync(dev)
        enc_ms.append(1000 * (time.perf_counter() - t0))
    dst = model.init_decode_state(1)
    model.decode_step(c1[..., :fpc], model.init_decode_state(1))
    dec_ms = []
    for i in range(chunks):
        _sync(dev)
        t0 = time.perf_counter()
        _, dst = model.decode_step(c1[..., i * fpc : (i + 1) * fpc], dst)
        _sync(dev)
        dec_ms.append(1000 * (time.perf_counter() - t0))

    def q(v: list[float], p: float) -> float:
        return round(sorted(v)[min(len(v) - 1, int(p * len(v)))], 3)

    return {
        "device": str(dev), "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "batch": batch, "seconds_per_clip": seconds,
        "encode_x_realtime": round(audio / t_enc, 1), "decode_x_realtime": round(audio / t_dec, 1),
        "stream_chunk_ms": 80, "stream_encode_ms_per_chunk": {"mean": round(statistics.mean(enc_ms), 3), "p50": q(enc_ms, .5), "p95": q(enc_ms, .95)},
        "stream_decode_ms_per_chunk": {"mean": round(statistics.mean(dec_ms), 3), "p50": q(dec_ms, .5), "p95": q(dec_ms, .95)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="base", choices=["tiny", "base"])
    ap.add_argument("--codec", help="a codec checkpoint instead of an untrained --size model")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--strides", action="append", default=[],
                    help="encoder strides of a variant, e.g. 2,4,5,8 (repeatable: variants measured in one run)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    from codec.model import CodecConfig, CodecModel, num_params

    if a.codec:
        from codec.adapters import load_codec

        models = [(a.codec, load_codec(a.codec))]
    else:
        models = []
        for st in a.strides or [None]:
            torch.manual_seed(0)
            over = {"strides": [int(v) for v in st.split(",")]} if st else {}
            models.append((f"{a.size}" + (f" strides {st}" if st else ""), CodecModel(CodecConfig.preset(a.size, **over))))
    torch.set_num_threads(1)
    results = []
    for name, model in models:
        print(f"codec {name}: {num_params(model) / 1e6:.2f} M params, {model.frame_rate} Hz, "
              f"{model.num_codebooks}x{model.codebook_size}")
        devs = [("cpu", a.batch)] + ([("cuda", max(a.batch, 32))] if torch.cuda.is_available() else [])
        for dev, batch in devs:
            r = bench(model, torch.device(dev), a.seconds, batch, a.chunks, a.repeat)
            r["codec"] = name
            results.append(r)
            print(f"  [{r['device']}{', 1 thread' if r['device'] == 'cpu' else ''}] batch {r['batch']} x "
                  f"{r['seconds_per_clip']} s: encode {r['encode_x_realtime']}x realtime, decode "
                  f"{r['decode_x_realtime']}x realtime{' per core' if r['device'] == 'cpu' else ''}")
            e, d = r["stream_encode_ms_per_chunk"], r["stream_decode_ms_per_chunk"]
            print(f"      streaming, 80 ms chunks: encode {e['mean']} ms (p95 {e['p95']}), decode {d['mean']} ms "
                  f"(p95 {d['p95']}) per chunk")
    if a.json:
        Path(a.json).write_text(json.dumps({"size": a.size, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
