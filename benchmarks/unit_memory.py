"""Peak memory of one ingest unit holding long recordings (issue [13] item 11).

Makes ``--files`` WAVs of ``--hours`` each (Telugu espeak-ng utterances with pauses and a noise floor, tiled), puts
them in ONE work unit, and runs the unit processor (what a Ray ingest actor does per unit: read, decode, VAD,
quality, filters, FLAC, tar shards, manifest parts) in a fresh child process with ``torch.set_num_threads(1)``.
Reports the child's peak RSS (``ru_maxrss``), its RSS once the VAD model is loaded, the wall time, and a digest
of the shards it wrote (to compare outputs of two checkouts).

``--repo PATH`` runs another checkout's code on the same files (e.g. ``git archive main | tar -x -C /tmp/before``)
so the figure before and after a change comes from one command each.

``--audio FILE`` (repeatable) uses your own recordings instead (e.g. a podcast-like two-person hour), and
``--diarize`` sends them through the diarizer as a podcast's mono recordings are (turns -> dialog windows).

Usage: python benchmarks/unit_memory.py [--hours 2] [--files 2] [--rate 16000] [--repo PATH] [--cache DIR]
       [--audio FILE ...] [--diarize]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import hashlib, json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from manifests.rows import Recording
from pipelines.config import IngestConfig
from pipelines.unit import UnitProcessor, make_units
import storage

paths, out, diarize = json.loads(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
cfg = IngestConfig(out=out)
cfg.diarization.report_der_sources = []
if diarize:  # as a podcast's mono recording: diarized, its turns cut into dialog windows
    cfg.diarization.sources = ["bench"]
recs = [Recording(recording_id=f"long{i}", source="bench", uri=p, license="CC0-1.0") for i, p in enumerate(paths)]
(unit,) = make_units(recs, len(recs), cfg.processing_fingerprint())
proc = UnitProcessor(cfg, "bench-run")
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
summary = proc.process(unit)
wall = time.perf_counter() - t0
h = hashlib.sha256()
for uri in storage.list_files(out + "/segments", ".tar"):
    h.update(storage.read_bytes(uri))
print(json.dumps({"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "rss_after_model_load_mib": round(loaded / 1024, 1), "unit_wall_s": round(wall, 1),
                  "seconds_in": summary["seconds_in"], "mono_samples": summary["mono"],
                  "dialog_samples": summary["dialog"],
                  "rejects": summary["rejects"], "shards_sha256": h.hexdigest()}))
"""


def make_long_wav(path: Path, hours: float, sr: int, seed: int) -> Path:
    """A ``hours``-long 16-bit WAV: utterances 1.5–6 s apart, -60 dBFS noise between them (written in blocks)."""
    import soundfile as sf

    sys.path.insert(0, str(ROOT))
    from pipelines.sources.synthetic import load_pairs, speak
    from storage.audio import resample

    rng = np.random.default_rng(seed)
    pairs = load_pairs()
    utts = []
    for pair in pairs[:12]:
        for text in (pair["q"], pair["a"]):
            x = speak(text, "te", 150, 50)
            utts.append(resample(x[None], 22050, sr)[0] * 0.5)
    total = int(hours * 3600 * sr)
    tmp = path.with_suffix(".tmp.wav")
    with sf.SoundFile(tmp, "w", sr, 1, subtype="PCM_16") as f:
        n = 0
        while n < total:
            gap = int(rng.uniform(1.5, 6.0) * sr)
            x = np.concatenate([np.zeros(gap, np.float32), utts[int(rng.integers(len(utts)))]])
            x = x + 10 ** (-60 / 20) * rng.standard_normal(len(x)).astype(np.float32)
            x = x[: total - n]
            f.write(x)
            n += len(x)
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0, help="length of each recording")
    ap.add_argument("--files", type=int, default=2, help="recordings in the unit")
    ap.add_argument("--rate", type=int, default=16000, help="sample rate of the WAVs")
    ap.add_argument("--repo", default=str(ROOT), help="checkout whose code runs the unit (default: this one)")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "matalu-bench-unit-memory"),
                    help="where the WAVs are made (kept for the next run)")
    ap.add_argument("--audio", action="append", default=[], help="use this recording (repeatable) instead of WAVs")
    ap.add_argument("--diarize", action="store_true", help="diarize the recordings as podcasts are")
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    paths = [str(Path(a).resolve()) for a in args.audio]
    for i in range(0 if paths else args.files):
        p = cache / f"long{i}-{args.hours:g}h-{args.rate}.wav"
        if not p.exists():
            print(f"making {p} ...", file=sys.stderr, flush=True)
            make_long_wav(p, args.hours, args.rate, seed=i)
        paths.append(str(p))
    with tempfile.TemporaryDirectory(prefix="matalu-bench-unit-") as out:
        r = subprocess.run([sys.executable, "-c", CHILD, args.repo, json.dumps(paths), out, "1" if args.diarize else "0"],
                           capture_output=True,
                           text=True, env={"PYTHONWARNINGS": "ignore", "PATH": "/usr/bin:/bin",
                                           "PYTHONPATH": args.repo})
    if r.returncode != 0:
        sys.exit(f"the unit failed:\n{r.stderr[-4000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res.update({"files": len(paths), "audio": args.audio or None, "diarize": args.diarize, "repo": args.repo,
                **({} if args.audio else {"hours_each": args.hours, "rate": args.rate})})
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
