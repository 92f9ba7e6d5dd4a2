"""Real-time speech-to-speech serving (`matalu lm serve`, lm/serve.py): latency and scaling with sessions.

For each count of concurrent sessions (``--sessions 1,2,4,8``) the engine and its WebSocket server run in this
process and that many Python clients (lm/serve_client.py) stream ``--seconds`` of audio each, paced at real time,
in 20 ms messages. Reported per count:

* algorithmic latency: one codec frame + the LM's ``max_delay`` frames (what no compute speed removes);
* end-to-end latency p50/p95/p99: client frame sent -> the reply frame of the step that took it received
  (compute, queueing and the local network; all sessions' frames together);
* compute per batched step (ms): encode (every session's streaming encoder), LM temporal (+ text head), LM depth,
  decode (every session's streaming decoder), from the engine's own timers;
* realtime factor: engine busy time / audio time stepped (below 1 the batch keeps up with real time).

Models are untrained (speed does not depend on the weights): the LM of ``--size`` with our codec's Q x K (8 x
1024) and the codec of ``--codec-size`` (``base``: the real one's dims). ``--soak S``: S seconds of 10 s conversations
back to back, the server's RSS after each.

Usage: python benchmarks/s2s.py [--size tiny] [--codec-size base] [--sessions 1,2,4,8] [--seconds 10]
       [--threads 1] [--gpu] [--soak 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def voice(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts at a syllable rate (4 Hz), 16 kHz: input whose content does not matter to speed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    env = (np.sin(2 * np.pi * 4 * np.arange(n) / 16000) > 0).astype(np.float32)
    return (0.1 * rng.standard_normal(n) * env).astype(np.float32)


def models(size: str, codec_size: str, dev: str):
    from codec.model import CodecConfig, CodecModel
    from lm import AudioLM, LMConfig

    torch.manual_seed(0)
    codec = CodecModel(CodecConfig.preset(codec_size)).to(dev).eval()
    lm = AudioLM(LMConfig.preset(size, num_codebooks=codec.num_codebooks, codebook_size=codec.codebook_size))
    return codec, lm.to(dev).eval()


def pct(xs: list[float], p: float) -> float:
    return round(float(np.percentile(np.asarray(xs), p)), 1) if xs else float("nan")


def run_sessions(codec, lm, n: int, seconds: float) -> dict:
    from lm.serve import STAGES, Engine, ServeConfig
    from lm.serve_client import converse
    from lm.serve_http import running

    engine = Engine(codec, lm, ServeConfig(max_sessions=n))

    async def all_(url):
        async def one(i):
            await asyncio.sleep(0.013 * i)  # clients out of phase, as real ones are
            return await converse(url, voice(seconds, i), seed=i, chunk=320, realtime=True)
        return await asyncio.gather(*(one(i) for i in range(n)))

    with running(engine) as srv:
        convs = asyncio.run(all_(srv.url))
    bad = [c.error or c.close_code for c in convs if c.close_code != 1000]
    if bad:
        raise RuntimeError(f"sessions failed: {bad}")
    lat = [x for c in convs for x in c.latency_ms]
    st = engine.stats
    steps = max(1, st.steps)
    return {"sessions": n, "seconds": seconds, "steps": st.steps, "frames": st.frames,
            "algorithmic_ms": round(1000 * engine.frame_s * (1 + lm.cfg.max_delay), 1),
            "e2e_p50_ms": pct(lat, 50), "e2e_p95_ms": pct(lat, 95), "e2e_p99_ms": pct(lat, 99),
            **{f"{k}_ms_per_step": round(1000 * st.seconds[k] / steps, 2) for k in STAGES},
            "rtf": round(st.busy / (steps * engine.frame_s), 3)}


def soak(codec, lm, seconds: float) -> dict:
    """Conversations of 10 s back to back, paced at real time, ``seconds`` in all; the server's RSS after a 5 s
    warm-up one and after each (a leak grows it conversation after conversation; one conversation's own buffers
    come and go)."""
    from lm.serve import Engine, ServeConfig
    from lm.serve_client import converse
    from lm.serve_http import rss_bytes, running

    rss, p95 = [], []
    with running(Engine(codec, lm, ServeConfig(max_sessions=1))) as srv:
        warm = asyncio.run(converse(srv.url, voice(5, 0), seed=0, chunk=320, realtime=True))
        assert warm.close_code == 1000, warm.error
        rss.append(rss_bytes())
        for i in range(max(1, round(seconds / 10))):
            c = asyncio.run(converse(srv.url, voice(10, i + 1), seed=i + 1, chunk=320, realtime=True))
            assert c.close_code == 1000, c.error
            p95.append(pct(c.latency_ms, 95))
            del c
            rss.append(rss_bytes())
    return {"soak_s": seconds, "rss_MB": [round(r / 2**20, 1) for r in rss], "e2e_p95_ms": p95}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="tiny", choices=["tiny", "125m", "1b"])
    ap.add_argument("--codec-size", default="base", choices=["tiny", "base"])
    ap.add_argument("--sessions", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--soak", type=float, default=0.0, help="also: this many seconds of 10 s conversations back to back, RSS after each")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device")
    codec, lm = models(args.size, args.codec_size, dev)
    load = os.getloadavg()[0]
    print(f"# s2s: LM {args.size} ({lm.num_params() / 1e6:.1f} M), codec {args.codec_size}, {dev}, "
          f"{args.threads} thread(s), load average {load:.2f}", flush=True)
    rows = []
    for n in [int(x) for x in args.sessions.split(",") if x]:
        t0 = time.perf_counter()
        row = run_sessions(codec, lm, n, args.seconds)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.soak:
        row = soak(codec, lm, args.soak)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "device": dev, "threads": args.threads,
                                               "load_start": load, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
