"""Export ``dialog`` samples in the layout moshi-finetune reads.

moshi-finetune trains on stereo WAVs (left = the voice the model learns to produce, i.e. our ``system`` side on
channel 0; right = the user) listed in a JSONL file, one ``{"path": ..., "duration": seconds}`` per line, paths
relative to the JSONL's directory. Mimi (its codec) runs at 24 kHz, so the 16 kHz FLAC of each sample is
resampled with soxr. Its data loader also opens ``<wav stem>.json`` beside each WAV for the text stream
(``{"alignments": [[word, [start_s, end_s], speaker], ...]}``); we write one from the sample's turns with word
times spread evenly over each turn (``SPEAKER_MAIN`` for system turns, ``SPEAKER_USER`` otherwise). Those are
approximate: re-annotate with moshi-finetune's ``annotate.py`` when word-accurate timing matters.

Layout written::

    OUT/data.jsonl
    OUT/data_stereo/<sample_id>.wav   (2 channels, 24 kHz, 16-bit PCM)
    OUT/data_stereo/<sample_id>.json
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

import storage
from manifests.io import read_table, resolve_table_uri
from manifests.rows import Sample, Turn
from storage.audio import decode_audio, encode_wav, resample

MOSHI_SAMPLE_RATE = 24000
JSONL_NAME = "data.jsonl"
AUDIO_DIR = "data_stereo"
MAIN_SPEAKER, OTHER_SPEAKER = "SPEAKER_MAIN", "SPEAKER_USER"


def alignments(turns: list[Turn]) -> list[list]:
    """Word alignments from turn texts: each turn's words share its span in proportion to their length."""
    out: list[list] = []
    for t in sorted(turns, key=lambda t: (t.start_s, t.end_s)):
        words = (t.text or "").split()
        if not words or t.end_s <= t.start_s:
            continue
        spk = MAIN_SPEAKER if t.role == "system" else OTHER_SPEAKER
        weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
        edges = t.start_s + (t.end_s - t.start_s) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        for w, a, b in zip(words, edges[:-1], edges[1:]):
            out.append([w, [round(float(a), 3), round(float(b), 3)], spk])
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    storage.write_bytes(str(path), data)  # atomic; no temp file left on error


def export_moshi(manifest_uri: str, out_dir: str | Path) -> Path:
    """Write every ``dialog`` sample of a run (``manifest_uri``: run dir, its manifests dir, or the samples
    parquet; local or s3://) as a 24 kHz stereo WAV + alignment JSON under ``out_dir``; return the JSONL path."""
    table = read_table(resolve_table_uri(str(manifest_uri), "samples"), Sample)
    rows = [r for r in table.to_pylist() if r.get("kind") == "dialog"]
    if not rows:
        raise ValueError(f"{manifest_uri}: no dialog samples to export (moshi-finetune needs 2-channel dialogs)")
    out = Path(out_dir)
    (out / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_shard[r["shard"]].append(r)
    lines: dict[str, str] = {}
    for shard in sorted(by_shard):
        wanted = {r["sample_id"]: r for r in by_shard[shard]}
        found = set()
        for key, members in storage.iter_shard(shard):
            row = wanted.get(key)
            if row is None:
                continue
            if "flac" not in members:
                raise ValueError(f"{shard}: sample {key} has no .flac member")
            audio, sr = decode_audio(members["flac"])
            if audio.shape[0] != 2:
                raise ValueError(f"{shard}: dialog sample {key} has {audio.shape[0]} channel(s); expected 2 (system, user)")
            y = resample(audio, sr, MOSHI_SAMPLE_RATE)
            rel = f"{AUDIO_DIR}/{key}.wav"
            _write_atomic(out / rel, encode_wav(y, MOSHI_SAMPLE_RATE))
            turns = [Turn.from_dict(t) for t in (row.get("turns") or [])]
            meta = {"alignments": alignments(turns), "sample_id": key, "source": row.get("source", ""),
                    "license": row.get("license", ""), "turns": [t.to_dict() for t in turns]}
            _write_atomic(out / AUDIO_DIR / f"{key}.json", json.dumps(meta, ensure_ascii=False).encode())
            lines[key] = json.dumps({"path": rel, "duration": round(y.shape[1] / MOSHI_SAMPLE_RATE, 6)})
            found.add(key)
        missing = sorted(set(wanted) - found)
        if missing:
            raise ValueError(f"{shard}: {len(missing)} sample(s) listed in the manifest are missing from the shard "
                             f"(first: {missing[0]})")
    jsonl = out / JSONL_NAME
    _write_atomic(jsonl, "".join(lines[k] + "\n" for k in sorted(lines)).encode())
    return jsonl
