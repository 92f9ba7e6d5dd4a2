"""Ingestion CPU stages vs ffmpeg, side by side in one run, one core.

Makes N mono 48 kHz 16-bit WAV files of Telugu speech (espeak-ng utterances with pauses and a noise floor,
like SLR66), then measures on the same files:

* ffmpeg decoding + resampling to 16 kHz mono float (one process over all files via the concat demuxer, so
  process start-up is not counted against it), ``-threads 1``;
* matalu's CPU stages one by one (decode, soxr resample, batched Silero VAD, segmentation + quality, FLAC, and the
  quality measures: bandwidth, BS.1770 loudness, DNSMOS P.835);
* the whole unit processor (everything a Ray actor does per unit: read, decode, resample, VAD, cut, language ID,
  measures, filters, duplicate fingerprints, FLAC, tar shards, manifest parts) with ``torch.set_num_threads(1)``,
  side by side in interleaved rounds without the filters, with the default ones (text LID, bandwidth, loudness,
  duplicate fingerprints) and with DNSMOS too, on this mono corpus and on synthetic two-channel dialogs (mono
  turns and dialog windows cut from the same audio); the filters' share of the unit time is
  (with - without) / with. With DNSMOS, the unit's scores (per stretch of a recording's speech) are compared with
  each sample's written audio scored on its own.

Prints audio-seconds per wall-second (x realtime) per core and the ratio to ffmpeg.
Usage: python benchmarks/ingest.py [--files 48] [--seconds 8] [--corpus both] [--dialogs 24] [--no-dnsmos]
       [--dnsmos-batch 8] [--json OUT]
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
    ap.add_argument("--corpus", choices=["mono", "dialog", "both"], default="both",
                    help="the unit processor on the mono WAV corpus, on synthetic dialogs, or both")
    ap.add_argument("--dialogs", type=int, default=24, help="synthetic dialogs in the dialog corpus")
    ap.add_argument("--breakdown", action="store_true", help="also time each default filter inside the unit")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "ingest.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from manifests.rows import Recording
    from pipelines.config import IngestConfig
    from pipelines.stages.segment import mono_spans
    from pipelines.stages.vad import SileroVad, speech_regions
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
    corpora = {}
    if args.corpus in ("mono", "both"):
        corpora["mono"] = ([Recording(recording_id=p.stem, source="bench", uri=str(p), speaker_id="s", text=text)
                            for p in paths], {})
    if args.corpus in ("dialog", "both"):
        corpora["dialog"] = dialog_corpus(tmp, args.dialogs)
        corpora["dialog mixed to mono"] = mono_dialogs(tmp / "mono-dialogs", *corpora["dialog"])
    whole_by, unit_audio, compare = {}, {}, {}
    for cname, (recs, extra) in corpora.items():
        got, unit_audio[cname], compare[cname] = bench_units(tmp / cname, recs, extra, args)
        whole_by.update({f"{cname}: {k}": v for k, v in got.items()})
    rows = [("ffmpeg decode + resample to 16 kHz (1 thread)", ff)] + list(stages.items())
    print(f"\n{'stage':62s} {'seconds':>8s} {'x realtime/core':>16s}")
    for name, sec in rows:
        print(f"{name:62s} {sec:8.3f} {audio_s / sec:16.0f}")
    print(f"\n{'unit processor (one thread), corpus: variant':80s} {'seconds':>8s} {'x realtime/core':>16s}")
    for name, sec in whole_by.items():
        print(f"{name:80s} {sec:8.3f} {unit_audio[name.split(':')[0]] / sec:16.0f}")
    shares = {}
    for cname in corpora:
        base = whole_by[f"{cname}: {NONE}"]
        for v in (DEFAULT, DNSMOS):
            if f"{cname}: {v}" in whole_by:
                sec = whole_by[f"{cname}: {v}"]
                shares[f"{cname}: {v}"] = (sec - base) / sec
                print(f"filters' share of the unit time, {cname}: {v}: {100 * (sec - base) / sec:.1f}%  (goal <= 25%)")
    for cname, c in compare.items():
        if c:
            print(f"DNSMOS per stretch vs per sample, {cname}: {json.dumps(c)}")
    whole = whole_by.get(f"mono: {DEFAULT}") or next(iter(whole_by.values()))
    ratio = ff / whole
    print(f"\nratio matalu all stages (mono corpus, default filters) / ffmpeg decode+resample = {ratio:.3f}  (goal >= 0.3)")
    out = {"audio_s": audio_s, "files": len(paths), "ffmpeg_x": audio_s / ff, "matalu_x": audio_s / whole,
           "ratio": ratio, "vad_model_rate": args.vad_rate, "stages_x": {k: audio_s / v for k, v in stages.items()},
           "unit_audio_s": unit_audio, "unit_s": whole_by,
           "unit_x": {k: unit_audio[k.split(":")[0]] / v for k, v in whole_by.items()}, "filters_share": shares,
           "dnsmos_stretch_vs_sample": compare, "cpu": os.cpu_count(), "load_avg": os.getloadavg()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


NONE = "no filters"
DEFAULT = "default filters (text LID, bandwidth, loudness, duplicate fingerprints)"
DNSMOS = "default filters + DNSMOS"


def dialog_corpus(tmp: Path, n_dialogs: int):
    """The synthetic source (two-channel espeak-ng dialogs with turns: mono turns and dialog windows from the same
    audio). Its DER report (a diarization pass kept for the synthetic source only) is off: the unit is then the
    smallest it is on a dialog corpus, so the filters' share is the largest."""
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import prepare_sources

    cfg = IngestConfig(out=str(tmp / "prep"), sources_dir=str(tmp / "src"),
                       sources=[SourceSpec("synthetic", {"n_dialogs": n_dialogs})])
    recs, _ = prepare_sources(cfg, say=lambda s: None)
    return recs, {"report_der_sources": []}


def mono_dialogs(d: Path, recs, extra: dict):
    """The same dialogs mixed down to one channel, their turns kept (like a diarized podcast): mono samples and
    dialog windows are then cut from one track."""
    from dataclasses import replace

    from storage.audio import decode_audio, encode_wav

    d.mkdir(parents=True, exist_ok=True)
    out = []
    for r in recs:
        x, sr = decode_audio(Path(r.uri).read_bytes())
        path = d / f"{r.recording_id}.wav"
        path.write_bytes(encode_wav(x.mean(axis=0, keepdims=True), sr))
        out.append(replace(r, uri=str(path), channel_roles=[]))
    return out, extra


def bench_units(out: Path, recs, extra: dict, args) -> tuple[dict, float, dict]:
    """The whole unit processor (everything a Ray actor does per unit) on ``recs``, without the filters, with the
    default ones and with DNSMOS too, in interleaved rounds (best of ``--unit-repeat``; DNSMOS: one round). Returns
    (seconds by variant, audio seconds, DNSMOS per stretch vs per sample)."""
    from pipelines.config import IngestConfig
    from pipelines.unit import UnitProcessor, make_units

    def none(c):
        c.measures.bandwidth = c.measures.loudness = False
        c.filters.lid.text = False
        c.filters.dedup.enabled = False

    def dnsmos(c):
        c.measures.dnsmos, c.measures.dnsmos_batch = True, args.dnsmos_batch

    variants = {NONE: none, DEFAULT: lambda c: None}
    if not args.no_dnsmos:
        variants[DNSMOS] = dnsmos
    runners = {}
    for i, (name, setup) in enumerate(variants.items()):
        vcfg = IngestConfig(out=str(out / str(i)), unit_size=args.unit_size)
        vcfg.vad.model_rate = args.vad_rate
        vcfg.diarization.report_der_sources = extra.get("report_der_sources", vcfg.diarization.report_der_sources)
        setup(vcfg)
        units = make_units(recs, args.unit_size, vcfg.processing_fingerprint())
        proc = UnitProcessor(vcfg, "bench")
        proc.process(units[0])  # warm-up (first-call overheads)
        runners[name] = (proc, units, vcfg)
    # interleaved rounds, best of each: a change in the machine's load hits every variant alike
    best = {name: float("inf") for name in runners}
    audio = 0.0
    for r in range(args.unit_repeat):
        for name, (proc, units, _) in runners.items():
            if r and name == DNSMOS:
                continue  # one DNSMOS round is enough: it is many times the rest on CPU
            t = time.perf_counter()
            got = [proc.process(u) for u in units]
            best[name] = min(best[name], time.perf_counter() - t)
            audio = sum(g["seconds_in"] for g in got)
    compare = dnsmos_compare(runners[DNSMOS][2], runners[DNSMOS][0]) if DNSMOS in runners else {}
    if args.breakdown:
        print(f"{out.name}: the default filters' parts, share of the unit with them:",
              json.dumps(breakdown(*runners[DEFAULT][:2], args.unit_repeat)))
    return best, audio, compare


def breakdown(proc, units, repeat: int) -> dict:
    """Each default filter's time in the unit processor (timers around the functions the unit calls), from the
    fastest of ``repeat`` passes over ``units``, as a share of that pass."""
    import functools

    import pipelines.unit as U
    from pipelines.stages import loudness, measures

    spent: dict[str, float] = {}
    patched = [(measures, "effective_bandwidth", "bandwidth"), (loudness.LoudnessMeter, "lufs_many", "loudness"),
               (U, "add_landmarks", "duplicate landmarks"), (U.UnitProcessor, "_language_ok", "text LID"),
               (U, "flac_pcm_md5", "exact-duplicate key")]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def timer(f, key):
        @functools.wraps(f)
        def g(*a, **kw):
            t = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
        return g

    for (owner, name, key), (_, _, f) in zip(patched, saved):
        setattr(owner, name, timer(f, key))
    try:
        best, parts = float("inf"), {}
        for _ in range(repeat):
            spent.clear()
            t = time.perf_counter()
            for u in units:
                proc.process(u)
            el = time.perf_counter() - t
            if el < best:
                best, parts = el, dict(spent)
    finally:
        for owner, name, f in saved:
            setattr(owner, name, f)
    return {k: f"{100 * v / best:.1f}%" for k, v in parts.items()}


def dnsmos_compare(cfg, proc, per_kind: int = 12) -> dict:
    """The unit's DNSMOS (windows over each recording's speech, a sample's score the overlap-weighted mean of the
    windows over it) against scoring each sample's written audio on its own (as before), on up to ``per_kind``
    samples of each kind: mean and largest absolute difference per rating."""
    import storage
    from jobs.runner import MANIFEST_DIR, PARTS
    from manifests.io import read_rows
    from manifests.rows import Sample
    from storage.audio import read_sample

    parts = storage.join(cfg.out, MANIFEST_DIR, PARTS)
    rows = [s for p in storage.list_files(parts, "samples.parquet") for s in read_rows(p, Sample)]
    out = {}
    for kind in ("mono", "dialog"):
        pick = sorted((s for s in rows if s.kind == kind and s.dnsmos_ovrl is not None), key=lambda s: s.sample_id)
        pick = {s.sample_id: s for s in pick[:: max(1, len(pick) // per_kind)][:per_kind]}
        audio = {k: read_sample(m)[1] for sh in sorted({s.shard for s in pick.values()}) for k, m in storage.iter_shard(sh)
                 if k in pick}
        alone = proc.measurer.dnsmos.score([audio[k] for k in pick])
        d = {r: [abs(getattr(a, r) - getattr(s, f"dnsmos_{r}")) for a, s in zip(alone, pick.values())]
             for r in ("sig", "bak", "ovrl")}
        if pick:
            out[kind] = {"samples": len(pick), **{f"{r}_mean_abs": round(float(np.mean(v)), 3) for r, v in d.items()},
                         **{f"{r}_max_abs": round(float(np.max(v)), 3) for r, v in d.items()}}
    return out


if __name__ == "__main__":
    sys.exit(main())
