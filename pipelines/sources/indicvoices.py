"""IndicVoices (AI4Bharat), Telugu: natural read, extempore and conversational speech from many districts, CC-BY-4.0.

The Hugging Face dataset ``ai4bharat/IndicVoices`` is gated (log in and accept its terms), so the user supplies a
local copy (``--archive PATH|URL``): a directory of its parquet files (``telugu/train-*.parquet``, ...) or a
tar/zip of one. Only local files are read; the audio stays in the parquet files
(``member = "parquet:<row>:<audio column>"``).

Each row holds one recording (an HF ``Audio`` struct) and its segments, in a column named ``segments``, ``json``
or ``verbatim`` (a JSON string or a list of structs), each with ``start``/``end`` (seconds), ``text`` and a
speaker (``speaker``/``speaker_id``). Rows may carry ``speaker_id``, ``gender``, ``state``, ``district``,
``task_name`` too.

Conversations become ``turns``: consecutive segments of one speaker merge when the pause between them is under
``merge_gap_s`` (0.5 s); of the speakers, the one who talks more is ``system`` and the other ``user``
(``system_role="less"`` swaps them); a third or later speaker's turns keep an empty role (not placed on either
dialog channel). The audio is a mono mix (``channel_roles=[]``): the ingestion splits it onto the two channels
by turn times. Single-speaker rows get no turns and yield mono samples. Rows whose segments do not parse (not
JSON, missing or non-numeric times, end before start, past the audio's end) are ``bad_segments`` rejects.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from manifests.rows import Recording, Reject, Turn
from pipelines.sources import hfparquet as H
from pipelines.sources.usercopy import fetch_user_copy

NAME = "indicvoices"
LICENSE = "CC-BY-4.0"
LANGUAGE = "telugu"
HF_REPO = "ai4bharat/IndicVoices"
MERGE_GAP_S = 0.5
INFO = {
    "name": NAME,
    "hours": "Telugu share of ~1.6k transcribed h (release-dependent)",
    "license": LICENSE,
    "access": "login",
    "kind": "dialog + mono",
    "description": "AI4Bharat IndicVoices Telugu: read, extempore and conversational speech (HF gated parquet copy)",
}
MISSING = (
    f"IndicVoices is a gated Hugging Face dataset ({HF_REPO}): log in, accept its terms, and download the Telugu "
    "parquet files (e.g. `huggingface-cli download ai4bharat/IndicVoices --repo-type dataset --include "
    "'telugu/*' --local-dir DIR`). Then run:\n"
    f"  matalu ingest --source {NAME} --archive DIR\n"
    "where DIR is that directory (or a tar/zip of it, or a URL of one)."
)
SEGMENT_COLS = ("segments", "json", "verbatim", "timestamps", "alignment")
_START_KEYS = ("start", "start_s", "start_time", "begin", "st")
_END_KEYS = ("end", "end_s", "end_time", "stop", "et")
_TEXT_KEYS = ("text", "transcript", "verbatim", "sentence", "normalized")
_SPK_KEYS = ("speaker", "speaker_id", "spk", "speaker_label", "spk_id")
_TEXT_COLS = ("text", "transcript", "transcription", "normalized", "sentence")
_ID_COLS = ("id", "utt_id", "audio_id", "fname", "file_name", "filename")


class BadSegments(ValueError):
    pass


@dataclass
class Segment:
    start_s: float
    end_s: float
    text: str
    speaker: str


def download(target: str | Path, *, mirror: str | None = None, archive: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True, **options: object) -> Path:
    """The user's copy, fetched (URL), extracted (archive) and marked complete; a directory is used in place."""
    _check_role(options.get("system_role", "more"))
    return fetch_user_copy(NAME, target, archive=archive, sha256=sha256, progress=progress, missing=MISSING)


def _check_role(system_role: object) -> str:
    if system_role not in ("more", "less"):
        raise ValueError(f"indicvoices: system_role must be 'more' or 'less' (got {system_role!r})")
    return str(system_role)


# -- segments -------------------------------------------------------------------------------------------------
def _first(d: dict, keys: tuple[str, ...]):
    lower = {str(k).lower(): v for k, v in d.items()}
    for k in keys:
        if k in lower and lower[k] not in (None, ""):
            return lower[k]
    return None


def _seconds(v: object, what: str, i: int) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadSegments(f"segment {i}: {what} {v!r} is not a number") from None
    if not math.isfinite(x):
        raise BadSegments(f"segment {i}: {what} is {x}")
    return x


def parse_segments(value: object, default_speaker: str = "", duration_s: float | None = None) -> list[Segment] | None:
    """Segments from a JSON string or a list of dicts, sorted by time; ``None`` when ``value`` is a plain
    transcript (a string that is not JSON). Raises :class:`BadSegments` with the reason otherwise."""
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        if s[0] not in "[{":
            return None
        try:
            value = json.loads(s)
        except json.JSONDecodeError as e:
            raise BadSegments(f"segments are not valid JSON ({e.msg} at char {e.pos})") from None
    if isinstance(value, dict):
        inner = _first(value, ("segments", "chunks", "utterances"))
        value = inner if inner is not None else [value]
    if not isinstance(value, (list, tuple)):
        raise BadSegments(f"segments are a {type(value).__name__}, not a list")
    out = []
    for i, seg in enumerate(value):
        if not isinstance(seg, dict):
            raise BadSegments(f"segment {i} is a {type(seg).__name__}, not an object with start/end/text")
        a, b = _first(seg, _START_KEYS), _first(seg, _END_KEYS)
        if a is None or b is None:
            raise BadSegments(f"segment {i} has no start/end: keys {sorted(map(str, seg))}")
        start, end = _seconds(a, "start", i), _seconds(b, "end", i)
        if start < 0 or end <= start:
            raise BadSegments(f"segment {i}: start {start} / end {end} (need 0 <= start < end)")
        if duration_s and end > duration_s + 0.5:
            raise BadSegments(f"segment {i} ends at {end:.2f} s, past the audio's {duration_s:.2f} s")
        text = _first(seg, _TEXT_KEYS)
        spk = _first(seg, _SPK_KEYS)
        out.append(Segment(start, end, "" if text is None else str(text).strip(),
                           str(spk).strip() if spk is not None else default_speaker))
    out.sort(key=lambda s: (s.start_s, s.end_s))
    return out


def talk_time(segments: list[Segment]) -> dict[str, float]:
    t: dict[str, float] = {}
    for s in segments:
        t[s.speaker] = t.get(s.speaker, 0.0) + (s.end_s - s.start_s)
    return t


def build_turns(segments: list[Segment], system_role: str = "more", merge_gap_s: float = MERGE_GAP_S) -> list[Turn]:
    """Speaker turns with roles for a conversation (two or more speakers); ``[]`` for a single speaker."""
    talk = talk_time(segments)
    if len(talk) < 2:
        return []
    ranked = sorted(talk, key=lambda s: (-talk[s], s))
    system, user = (ranked[0], ranked[1]) if system_role == "more" else (ranked[1], ranked[0])
    roles = {system: "system", user: "user"}
    turns: list[Turn] = []
    for s in segments:
        last = turns[-1] if turns else None
        if last is not None and last.speaker == s.speaker and s.start_s - last.end_s < merge_gap_s:
            last.end_s = max(last.end_s, round(s.end_s, 4))
            last.text = " ".join(x for x in (last.text, s.text) if x)
            continue
        turns.append(Turn(role=roles.get(s.speaker, ""), speaker=s.speaker, start_s=round(s.start_s, 4),
                          end_s=round(s.end_s, 4), text=s.text))
    return turns


# -- prepare --------------------------------------------------------------------------------------------------
def prepare(downloaded: str | Path, *, system_role: str = "more", merge_gap_s: float = MERGE_GAP_S,
            language: str = LANGUAGE, license: str | None = None, **_: object) -> Iterator[Recording | Reject]:
    system_role = _check_role(system_role)
    root = Path(downloaded)
    missing = (f"indicvoices: no parquet files under {root} (expected {HF_REPO} {language}/*.parquet): "
               "is this the right copy?")
    for f, meta, fstem, split_default, i, row in H.rows_of(root, language, missing):
        cols = list(row)
        name = H.text_of(row, _ID_COLS) or meta.audio_paths[i]
        rid = H.row_id(fstem, i, name)
        item = f"{f.name}:{i}"
        row_spk = H.text_of(row, ("speaker_id", "speaker", "spk"))
        dcol = H.find_column(cols, ("duration", "duration_s"))
        try:
            duration = float(row[dcol]) if dcol and row.get(dcol) is not None else None
        except (TypeError, ValueError):
            duration = None
        scol = H.find_column(cols, SEGMENT_COLS)
        try:
            segs = parse_segments(row.get(scol) if scol else None, row_spk, duration)
        except BadSegments as e:
            yield Reject(item=item, stage="prepare", reason="bad_segments", source=NAME, recording_id=rid,
                         detail=f"{scol} of row {i} in {f.name}: {e}")
            continue
        plain = ""
        if segs is None:  # the column holds a plain transcript
            plain, segs = str(row.get(scol) or "").strip(), []
        turns = build_turns(segs, system_role, merge_gap_s)
        talk = talk_time(segs)
        main = max(sorted(talk), key=lambda s: talk[s]) if talk else ""
        if turns:
            text = "\n".join(t.text for t in turns if t.text)
        else:
            text = H.text_of(row, _TEXT_COLS) or " ".join(s.text for s in segs if s.text) or plain
        if not text:
            yield Reject(item=item, stage="prepare", reason="no_transcript", source=NAME, recording_id=rid,
                         detail=f"row {i} of {f.name} has neither text nor segments")
            continue
        gcol = H.find_column(cols, ("gender", "sex"))
        yield Recording(
            recording_id=rid, source=NAME, uri=str(f.resolve()), member=f"parquet:{i}:{meta.audio_column}",
            speaker_id=main or row_spk, gender=H.gender_of(row.get(gcol)) if gcol else "", text=text,
            language="te", license=license or LICENSE, split=H.text_of(row, ("split",)) or split_default,
            turns=turns, channel_roles=[],
        )
