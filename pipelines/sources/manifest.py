"""Bring your own audio: any CSV, TSV or JSONL listing (path or URL, text, speaker, license).

Columns (header names, case-insensitive; spaces and '-' count as '_'): ``path`` (or ``audio``, ``uri``, ``file``,
``filename``, ``wav``, …), and optionally ``text`` (``transcript``, ``sentence``), ``speaker`` (``speaker_id``,
``client_id``, ``spk``), ``license`` (``lic``), ``gender``, ``language``, ``recording_id`` (``id``), ``split``.
Relative paths are relative to the listing file.

Every physical line is accounted for: the header, a blank line (skipped), a recording, or a ``Reject`` row naming
the line (``<listing>:<line>``) — a line whose fields do not match the header, an unterminated quote (a record never
spans lines), a JSONL line that is not an object, a line without a path, a duplicate id. A listing that is not UTF-8,
or whose header has no path column (or two), stops the run with a sentence (:class:`listing.ListingError`).
A UTF-8 byte order mark is accepted; the delimiter is a tab when the header has tabs and no commas (or a ``.tsv``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterator

from manifests.rows import Recording, Reject
from pipelines.sources.listing import ListingError, read_lines, split_record

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
    "path": ("path", "audio", "uri", "file", "filename", "file_name", "filepath", "file_path", "audio_path",
             "audio_filepath", "audio_file", "wav", "wav_path"),
    "text": ("text", "transcript", "transcription", "sentence", "normalized_text"),
    "speaker": ("speaker", "speaker_id", "client_id", "spk", "spk_id"),
    "license": ("license", "licence", "lic"),
    "gender": ("gender",),
    "language": ("language", "lang"),
    "recording_id": ("recording_id", "id", "utt_id"),
    "split": ("split",),
}
_FIELD_OF = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_AUDIO_EXT = (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm", ".aac", ".mp4")


def safe_id(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", s).strip("-") or "rec"


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _looks_like_data(value: str) -> bool:
    v = value.strip().strip('"').lower()
    return "://" in v or "/" in v or v.endswith(_AUDIO_EXT)


def header_columns(names: list[str], listing: str) -> dict[str, int]:
    """Map each known field to its column in a CSV/TSV header; refuses a header without exactly one path column,
    or with two columns that mean the same field, with a sentence naming what was found and what is accepted."""
    cols: dict[str, int] = {}
    for i, raw in enumerate(names):
        field = _FIELD_OF.get(_norm(raw))
        if field is None:
            continue
        if field in cols:
            raise ListingError(f"{listing}: columns {names[cols[field]]!r} and {raw!r} both name the {field} field; "
                               "rename or drop one and rerun")
        cols[field] = i
    if "path" not in cols:
        found = ", ".join(repr(n) for n in names) or "nothing"
        hint = ""
        if any(_looks_like_data(n) for n in names):
            hint = (" The first line looks like data, not a header: add a header line such as "
                    "'path,text,speaker,license' (tab-separated for a TSV).")
        raise ListingError(f"{listing}: the header has no audio path column (found {found}; accepted names: "
                           f"{', '.join(_ALIASES['path'])}).{hint}")
    return cols


def _delimiter(path: Path, header: str) -> str:
    tabs, commas = "\t" in header, "," in header
    if tabs != commas:
        return "\t" if tabs else ","
    return "\t" if path.suffix.lower() == ".tsv" else ","


def rows(path: Path) -> Iterator[tuple[int, dict | str]]:
    """``(line, {field: value})`` for each record line of a listing, or ``(line, reason)`` for a bad line.

    Blank lines and the header line yield nothing; every other physical line yields exactly once."""
    lines = read_lines(path, path.name)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in lines:
            if line.strip():
                yield n, _json_row(line)
        return
    content = [(n, line) for n, line in lines if line.strip()]
    if not content:
        return
    hn, header = content[0]
    delim = _delimiter(path, header)
    try:
        names = split_record(header, delim)
    except ValueError as e:
        raise ListingError(f"{path.name} line {hn} (the header): {e}") from None
    cols = header_columns(names, path.name)
    kind = "tab" if delim == "\t" else "comma"
    for n, line in content[1:]:
        try:
            fields = split_record(line, delim)
        except ValueError as e:
            yield n, f"line {n}: {e}: {line[:120]!r}"
            continue
        if len(fields) != len(names):
            yield n, (f"line {n} has {len(fields)} {kind}-separated fields, the header has {len(names)} "
                      f"(an unquoted {'tab' if delim == chr(9) else 'comma'} in a value?): {line[:120]!r}")
            continue
        yield n, {field: fields[i].strip() for field, i in cols.items()}


def _json_row(line: str) -> dict | str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e.msg}"
    if not isinstance(obj, dict):
        return f"a JSONL line must be an object {{\"path\": ...}}, this one is {type(obj).__name__}: {line.strip()[:80]}"
    out: dict[str, str] = {}
    for key, value in obj.items():
        field = _FIELD_OF.get(_norm(key))
        if field is None or value is None or value == "":
            continue
        if isinstance(value, (dict, list)):
            return f"key {key!r} holds a {type(value).__name__}, expected a string"
        if field in out:
            continue  # the first alias on the line wins (as in a header, aliases mean the same field)
        out[field] = str(value).strip()
    return out


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
    for n, row in rows(path):
        item = f"{path.name}:{n}"
        if isinstance(row, str):
            yield Reject(item=item, stage="prepare", reason="bad_line", detail=row, source=NAME)
            continue
        audio = row.get("path", "")
        if not audio:
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"line {n} has no audio path (accepted names: {', '.join(_ALIASES['path'])})")
            continue
        uri = audio if "://" in audio else str((path.parent / audio).resolve())
        rid = row.get("recording_id") or f"{safe_id(Path(audio).stem)}-{hashlib.sha1(audio.encode()).hexdigest()[:6]}"
        rid = safe_id(rid)
        if rid in seen:
            yield Reject(item=item, stage="prepare", reason="duplicate_id", source=NAME, recording_id=rid,
                         detail=f"line {n}: recording id {rid!r} appears twice; the first line is kept")
            continue
        seen.add(rid)
        yield Recording(
            recording_id=rid,
            source=NAME,
            uri=uri,
            speaker_id=row.get("speaker", ""),
            gender=row.get("gender", ""),
            text=row.get("text", ""),
            language=row.get("language", "") or "te",
            license=row.get("license", "") or default_license,
            split=row.get("split", ""),
        )
