"""Bring your own audio: any CSV, TSV or JSONL listing (path or URL, text, speaker, license).

Columns (header names, case-insensitive): ``path`` (or ``audio``, ``uri``, ``file``), and optionally ``text``
(``transcript``, ``sentence``), ``speaker`` (``speaker_id``, ``client_id``), ``license``, ``gender``, ``language``,
``recording_id`` (``id``), ``split``. Relative paths are relative to the listing file. Lines without a path, or
with a duplicate id, become ``Reject`` rows with the line number; the rest become recordings.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Iterator

from manifests.rows import Recording, Reject

NAME = "manifest"
INFO = {
    "name": NAME,
    "hours": "yours",
    "license": "per row",
    "access": "user-supplied",
    "kind": "mono",
    "description": "CSV/TSV/JSONL of (path or URL, text, speaker, license): Vakyansh, your own recordings",
}
_ALIASES = {
    "path": ("path", "audio", "uri", "file", "audio_path", "audio_filepath"),
    "text": ("text", "transcript", "transcription", "sentence"),
    "speaker": ("speaker", "speaker_id", "client_id"),
    "license": ("license", "licence"),
    "gender": ("gender",),
    "language": ("language", "lang"),
    "recording_id": ("recording_id", "id", "utt_id"),
    "split": ("split",),
}


def safe_id(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", s).strip("-") or "rec"


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, {"__error__": f"not valid JSON: {e.msg}"}
        return
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim, quoting=csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL)
    for n, row in enumerate(reader, 2):
        yield n, row


def _get(row: dict, field: str) -> str:
    lower = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    for a in _ALIASES[field]:
        v = lower.get(a)
        if v not in (None, ""):
            return str(v).strip()
    return ""


def download(target=None, *, path: str | None = None, **_: object) -> Path:
    if not path:
        raise ValueError("the manifest source needs options.path: a CSV, TSV or JSONL file listing your audio")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"manifest listing {p} does not exist")
    return p


def prepare(downloaded, *, default_license: str = "", **_: object) -> Iterator[Recording | Reject]:
    path = Path(downloaded)
    seen: set[str] = set()
    for n, row in _rows(path):
        item = f"{path.name}:{n}"
        if "__error__" in row:
            yield Reject(item=item, stage="prepare", reason="bad_line", detail=row["__error__"], source=NAME)
            continue
        audio = _get(row, "path")
        if not audio:
            yield Reject(item=item, stage="prepare", reason="bad_line", detail="line has no audio path column value", source=NAME)
            continue
        uri = audio if "://" in audio else str((path.parent / audio).resolve())
        rid = _get(row, "recording_id") or f"{safe_id(Path(audio).stem)}-{hashlib.sha1(audio.encode()).hexdigest()[:6]}"
        rid = safe_id(rid)
        if rid in seen:
            yield Reject(item=item, stage="prepare", reason="duplicate_id", detail=f"recording id {rid!r} appears twice", source=NAME, recording_id=rid)
            continue
        seen.add(rid)
        yield Recording(
            recording_id=rid,
            source=NAME,
            uri=uri,
            speaker_id=_get(row, "speaker"),
            gender=_get(row, "gender"),
            text=_get(row, "text"),
            language=_get(row, "language") or "te",
            license=_get(row, "license") or default_license,
            split=_get(row, "split"),
        )
