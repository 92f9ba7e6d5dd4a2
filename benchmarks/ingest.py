"""Ingestion CPU stages vs ffmpeg, side by side in one run, one core.

Makes N mono 48 kHz 16-bit WAV files of Telugu speech (espeak-ng utterances with pauses and a noise floor,
like SLR66), then measures on the same files:

* ffmpeg decoding + resampling to 16 kHz mono float (one process over all files via the concat demuxer, so
  process start-up is not counted against it), ``-threads 1``;
* matalu's CPU stages one by one (decode, soxr resample, batched Silero VAD, segmentation + quality, FLAC, and the
  quality measures: bandwidth, BS.1770 loudness, DNSMOS P.835), and the whole unit processor (everything a Ray
  actor does per unit: read, decode, resample, VAD, measures, filters, FLAC, tar shards, manifest parts) with
  ``torch.set_num_threads(1)``, side by side without the quality measures, with the default ones (bandwidth,
  loudness) and with DNSMOS too; the measures' share of the unit time is (with - without) / with.

Prints audio-seconds per wall-second (x realtime) per core and the ratio to ffmpeg.
Usage: python benchmarks/ingest.py [--files 48] [--seconds 8] [--no-dnsmos] [--dnsmos-batch 8] [--json OUT]
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


def timed(fn, *a, repeat: int = REPEAT, **kw):
    """(result, best wall time of ``repeat`` runs): the minimum is the least disturbed by other load."""
    best = float("inf")
    for _ in range(repeat):
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
    ap.add_argument("--unit-repeat", type=int, default=5, help="interleaved rounds of the unit processor variants")
    ap.add_argument("--no-dnsmos", action="store_true", help="leave DNSMOS out (it is the slow measure on CPU)")
    ap.add_argument("--dnsmos-batch", type=int, default=8, help="9.01 s windows per onnxruntime call")
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

    # the quality measures alone, on the same 16 kHz audio (pipelines/stages/measures.py)
    from pipelines.stages.bandwidth import effective_bandwidth
    from pipelines.stages.loudness import LoudnessMeter

    meter = LoudnessMeter(16000)
    _, stages["bandwidth (measure)"] = timed(lambda: [effective_bandwidth(x, 16000) for x in rs])
    _, stages["loudness BS.1770 (measure)"] = timed(lambda: [meter.lufs(x) for x in rs])
    if not args.no_dnsmos:
        from pipelines.stages.dnsmos import Dnsmos

        dn = Dnsmos(batch=args.dnsmos_batch)
        dn.score([rs[0]])  # warm-up
        _, stages[f"DNSMOS P.835 (onnxruntime CPU, batch {args.dnsmos_batch})"] = timed(lambda: dn.score(rs), repeat=1)

    # a Telugu transcript, so the default text language ID judges (and keeps) every sample as it would real data
    text = "ఈ రోజు ఆకాశం మబ్బుగా ఉంది"
    recs = [Recording(recording_id=p.stem, source="bench", uri=str(p), speaker_id="s", text=text) for p in paths]
    # the whole unit processor side by side: without the new measures (as before issue [10]), with the default
    # measures (bandwidth + loudness), and with DNSMOS as well
    variants = {"no quality measures": dict(dnsmos=False, bandwidth=False, loudness=False),
                "default measures (bandwidth, loudness)": {}}
    if not args.no_dnsmos:
        variants["default measures + DNSMOS"] = dict(dnsmos=True, dnsmos_batch=args.dnsmos_batch)
    runners = {}
    for i, (name, kw) in enumerate(variants.items()):
        vcfg = IngestConfig(out=str(tmp / "out" / str(i)), unit_size=args.unit_size)
        vcfg.vad.model_rate = args.vad_rate
        for k, v in kw.items():
            setattr(vcfg.measures, k, v)
        units = make_units(recs, args.unit_size, vcfg.processing_fingerprint())
        proc = UnitProcessor(vcfg, "bench")
        proc.process(units[0])  # warm-up (first-call overheads)
        runners[name] = (proc, units)
    # interleaved rounds, best of each: a change in the machine's load hits every variant alike
    whole_by = {name: float("inf") for name in runners}
    for r in range(args.unit_repeat):
        for name, (proc, units) in runners.items():
            if r and variants[name].get("dnsmos"):
                continue  # one DNSMOS round is enough: it is 20x the rest
            t = time.perf_counter()
            for u in units:
                proc.process(u)
            whole_by[name] = min(whole_by[name], time.perf_counter() - t)
    whole = whole_by["default measures (bandwidth, loudness)"]

    rows = [("ffmpeg decode + resample to 16 kHz (1 thread)", ff)] + list(stages.items()) + [
        (f"matalu unit processor, {name}", sec) for name, sec in whole_by.items()]
    print(f"\n{'stage':62s} {'seconds':>8s} {'x realtime/core':>16s}")
    for name, sec in rows:
        print(f"{name:62s} {sec:8.3f} {audio_s / sec:16.0f}")
    ratio = ff / whole
    print(f"\nratio matalu all stages / ffmpeg decode+resample = {ratio:.3f}  (goal >= 0.3)")
    base = whole_by["no quality measures"]
    shares = {name: (sec - base) / sec for name, sec in whole_by.items() if name != "no quality measures"}
    for name, sh in shares.items():
        print(f"quality measures' share of the unit time, {name}: {100 * sh:.1f}%  (goal <= 25%)")
    out = {"audio_s": audio_s, "files": len(paths), "ffmpeg_x": audio_s / ff, "matalu_x": audio_s / whole,
           "ratio": ratio, "vad_model_rate": args.vad_rate, "stages_x": {k: audio_s / v for k, v in stages.items()},
           "unit_x": {k: audio_s / v for k, v in whole_by.items()}, "measures_share": shares, "cpu": os.cpu_count(),
           "load_avg": os.getloadavg()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
