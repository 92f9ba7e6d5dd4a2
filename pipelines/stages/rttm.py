"""RTTM read/write (NIST Rich Transcription Time Marked), the diarization exchange format.

One line per speaker segment::

    SPEAKER <uri> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

Segments are ``(start_s, end_s, speaker)`` tuples here; a file maps each ``uri`` (recording name) to its list.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

Segment = tuple[float, float, str]

_WS = re.compile(r"\s+")


def safe_uri(name: str) -> str:
    """An RTTM field cannot hold whitespace: replace it with '_' (an empty name becomes 'audio')."""
    return _WS.sub("_", str(name).strip()) or "audio"


def format_rttm(segments: Iterable[Segment], uri: str, channel: int = 1) -> str:
    """RTTM text for one recording: segments sorted by start, times with millisecond precision."""
    uri = safe_uri(uri)
    lines = []
    for start, end, speaker in sorted(segments, key=lambda s: (s[0], s[1], str(s[2]))):
        dur = float(end) - float(start)
        if dur <= 0:
            continue
        spk = safe_uri(speaker)
        lines.append(f"SPEAKER {uri} {channel} {float(start):.3f} {dur:.3f} <NA> <NA> {spk} <NA> <NA>\n")
    return "".join(lines)


def write_rttm(path_or_file: str | Path | TextIO, segments: Iterable[Segment] | dict[str, list[Segment]],
               uri: str | None = None) -> None:
    """Write one recording's segments (``uri`` required) or a ``{uri: segments}`` dict to a path or open file."""
    if isinstance(segments, dict):
        text = "".join(format_rttm(segs, u) for u, segs in segments.items())
    else:
        if uri is None:
            raise ValueError("write_rttm: pass uri= when writing a plain segment list")
        text = format_rttm(segments, uri)
    if hasattr(path_or_file, "write"):
        path_or_file.write(text)  # type: ignore[union-attr]
    else:
        Path(path_or_file).write_text(text, encoding="utf-8")  # type: ignore[arg-type]


def parse_rttm(text: str, name: str = "RTTM") -> dict[str, list[Segment]]:
    """``{uri: [(start_s, end_s, speaker), ...]}`` from RTTM text. Only ``SPEAKER`` lines count; blank lines
    and ``#`` comments are skipped; anything malformed raises ``ValueError`` naming the line."""
    out: dict[str, list[Segment]] = {}
    for n, line in enumerate(io.StringIO(text), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split()
        if f[0] != "SPEAKER":
            continue  # other RTTM types (SPKR-INFO, LEXEME, ...) carry no speaker time
        if len(f) < 8:
            raise ValueError(f"{name}:{n}: a SPEAKER line needs at least 8 fields "
                             f"(SPEAKER uri channel onset duration <NA> <NA> speaker), got {len(f)}")
        try:
            onset, dur = float(f[3]), float(f[4])
        except ValueError:
            raise ValueError(f"{name}:{n}: onset and duration must be numbers (got {f[3]!r}, {f[4]!r})") from None
        if not (math.isfinite(onset) and math.isfinite(dur)) or onset < 0 or dur < 0:
            raise ValueError(f"{name}:{n}: onset and duration must be finite and non-negative (got {f[3]}, {f[4]})")
        out.setdefault(f[1], []).append((onset, onset + dur, f[7]))
    for segs in out.values():
        segs.sort(key=lambda s: (s[0], s[1], s[2]))
    return out


def read_rttm(path: str | Path) -> dict[str, list[Segment]]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"RTTM file {p} does not exist")
    return parse_rttm(p.read_text(encoding="utf-8"), str(p))
