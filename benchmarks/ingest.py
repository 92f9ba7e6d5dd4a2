"""Ingestion CPU stages vs ffmpeg, side by side in one run, one core.

Makes N mono 48 kHz 16-bit WAV files of Telugu speech (espeak-ng utterances with pauses and a noise floor,
like SLR66), then measures on the same files:

* ffmpeg decoding + resampling to 16 kHz mono float (one process over all files via the concat demuxer, so
  process start-up is not counted against it), ``-threads 1``;
* matalu's CPU stages one by one (decode, soxr resample, batched Silero VAD, segmentation + quality, FLAC), and
  the whole unit processor (everything a Ray actor does per unit: read, decode, resample, VAD, filters, FLAC,
  tar shards, manifest parts) with ``torch.set_num_threads(1)``.

Prints audio-seconds per wall-second (x realtime) per core and the ratio to ffmpeg.
Usage: python benchmarks/ingest.py [--files 48] [--seconds 8] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_corpus(d: Path, n_files: int, seconds: float, seed: int = 0) -> list[Path]:
    from pipelines.sources.synthetic import load_pairs, speak
    from storage.audio import resample

    rng = np.random.default_rng(seed)
    pairs = load_pairs()
    paths = []
    k = 0
    for i in range(n_files):
        parts, total = [], 0.0
        while total < seconds:
            p = pairs[k % len(pairs)]
            k += 1
            x = speak(p["a"], "te" if i % 2 else "te+f3", 150, 50)
            pause = np.zeros(int(rng.uniform(0.2, 0.6) * 22050), np.float32)
            parts += [x, pause]
            total += (len(x) + len(pause)) / 22050
        y = resample(np.concatenate(parts)[None], 22050, 48000)[0]
        y = y + (10 ** (-55 / 20) * rng.standard_normal(len(y))).astype(np.float32)
        path = d / f"utt_{i:04d}.wav"
        sf.write(path, np.clip(y, -1, 1), 48000, subtype="PCM_16")
        paths.append(path)
    return paths


def bench_ffmpeg(paths: list[Path], tmp: Path) -> float:
    """The faster of: one ffmpeg over all files (concat demuxer), one ffmpeg over the files joined in one WAV.
    Either way ffmpeg's process start-up is paid once, not per file."""
    lst = tmp / "list.txt"
    lst.write_text("".join(f"file '{p}'\n" for p in paths))
    joined = tmp / "joined.wav"
    subprocess.run(["sox", *map(str, paths), str(joined)], check=True)
    best = float("inf")
    for inp in (["-f", "concat", "-safe", "0", "-i", str(lst)], ["-i", str(joined)]):
        t = time.perf_counter()
        subprocess.run(["ffmpeg", "-loglevel", "error", "-threads", "1", *inp,
                        "-ar", "16000", "-ac", "1", "-f", "f32le", "-y", "/dev/null"], check=True)
        best = min(best, time.perf_counter() - t)
    joined.unlink()
    return best


REPEAT = 3


def timed(fn, *a, **kw):
    """(result, best wall time of REPEAT runs): the minimum is the least disturbed by other load."""
    best = float("inf")
    for _ in range(REPEAT):
        t = time.perf_counter()
        out = fn(*a, **kw)
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--unit-size", type=int, default=16)
    ap.add_argument("--vad-rate", type=int, default=8000, help="Silero model rate: 8000 or 16000")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "ingest.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from manifests.rows import Recording
    from pipelines.config import IngestConfig
    from pipelines.stages.segment import mono_spans
    from pipelines.stages.vad import SileroVad, speech_regions
    from pipelines.unit import UnitProcessor, make_units
    from storage.audio import encode_flac, resample

    tmp = Path(tempfile.mkdtemp(prefix="matalu-bench-"))
    paths = make_corpus(tmp, args.files, args.seconds)
    audio_s = sum(sf.info(p).duration for p in paths)
    blobs = [p.read_bytes() for p in paths]
    print(f"corpus: {len(paths)} files, {audio_s:.1f} s of 48 kHz mono speech in {tmp}")

    ff = min(bench_ffmpeg(paths, tmp) for _ in range(REPEAT))

    cfg = IngestConfig(out=str(tmp / "out"), unit_size=args.unit_size)
    cfg.vad.model_rate = args.vad_rate
    vad = SileroVad(model_rate=cfg.vad.model_rate)
    vad.probs([np.zeros(16000, np.float32)])  # warm-up
    stages = {}
    raw, stages["decode (soundfile)"] = timed(lambda: [sf.read(__import__("io").BytesIO(b), dtype="float32")[0] for b in blobs])
    rs, stages["resample 48k->16k (soxr HQ)"] = timed(lambda: [resample(x[None], 48000, 16000)[0] for x in raw])
    probs, stages["VAD (Silero, batched per unit)"] = timed(
        lambda: [p for i in range(0, len(rs), args.unit_size) for p in vad.probs(rs[i:i + args.unit_size])])
    spans, stages["regions + spans"] = timed(
        lambda: [mono_spans(speech_regions(p, len(x), cfg.vad), 30.0, 1.0) for p, x in zip(probs, rs)])
    _, stages["FLAC encode"] = timed(lambda: [encode_flac(x[None], 16000) for x in rs])

    # a Telugu transcript, so the default text language ID judges (and keeps) every sample as it would real data
    text = "ఈ రోజు ఆకాశం మబ్బుగా ఉంది"
    recs = [Recording(recording_id=p.stem, source="bench", uri=str(p), speaker_id="s", text=text) for p in paths]
    units = make_units(recs, args.unit_size, cfg.processing_fingerprint())
    proc = UnitProcessor(cfg, "bench")
    proc.process(units[0])  # warm-up (first-call overheads)
    _, whole = timed(lambda: [proc.process(u) for u in units])

    rows = [("ffmpeg decode + resample to 16 kHz (1 thread)", ff)] + list(stages.items()) + [("matalu unit processor, all stages", whole)]
    print(f"\n{'stage':55s} {'seconds':>8s} {'x realtime/core':>16s}")
    for name, sec in rows:
        print(f"{name:55s} {sec:8.3f} {audio_s / sec:16.0f}")
    ratio = ff / whole
    print(f"\nratio matalu all stages / ffmpeg decode+resample = {ratio:.3f}  (goal >= 0.3)")
    out = {"audio_s": audio_s, "files": len(paths), "ffmpeg_x": audio_s / ff, "matalu_x": audio_s / whole,
           "ratio": ratio, "vad_model_rate": args.vad_rate, "stages_x": {k: audio_s / v for k, v in stages.items()}, "cpu": os.cpu_count()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
