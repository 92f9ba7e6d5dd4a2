"""Text listings (transcript files, CSV/TSV/JSONL manifests) read as numbered physical lines.

Every recipe that reads a line-based listing goes through :func:`read_lines`, so all of them agree on what a line is
and on its number: lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (never at the Unicode separators that
``str.splitlines`` also splits on), numbers count every physical line from 1 (blank ones included), a UTF-8 byte
order mark is dropped, and a line that is not UTF-8 stops the run with a sentence naming the file and the line
(decoding with ``errors="replace"`` would silently corrupt transcripts).

:func:`split_record` parses one line of a CSV/TSV into fields. A record never spans lines: a quote left open at the
end of a line is an error for that line only, so an unterminated quote cannot swallow the lines after it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

BOM = b"\xef\xbb\xbf"
_EOL = re.compile(rb"\r\n|\r|\n")


class ListingError(ValueError):
    """A listing the job cannot read at all (not UTF-8, no usable header): one sentence saying what to do."""


def read_lines(path: str | Path, name: str | None = None) -> list[tuple[int, str]]:
    """``(line_number, text)`` for every physical line of ``path`` (blank lines included, line ends removed).

    ``name`` is how messages call the file (default: its path)."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(BOM):
        data = data[len(BOM):]
    raw = _EOL.split(data)
    if raw and raw[-1] == b"":  # the text after the final line end is not a line
        raw.pop()
    out: list[tuple[int, str]] = []
    for n, b in enumerate(raw, 1):
        try:
            out.append((n, b.decode("utf-8")))
        except UnicodeDecodeError as e:
            raise ListingError(
                f"{name or path} line {n} is not UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1}); "
                f"save the listing as UTF-8 (e.g. iconv -f latin1 -t utf-8 {path.name} > fixed) and rerun"
            ) from None
    return out


def split_record(line: str, delimiter: str) -> list[str]:
    """The fields of one CSV (quoted, ``delimiter`` ',') or TSV (unquoted, ``delimiter`` '\\t') line.

    Raises ``ValueError`` with a short reason when the line is not a well-formed record (an unterminated quote)."""
    if delimiter == "\t":
        return line.split("\t")
    try:
        rows = list(csv.reader([line], delimiter=delimiter, strict=True))
    except csv.Error as e:
        raise ValueError(f"malformed CSV ({e}); a quoted field must close on the same line") from None
    return rows[0] if rows else [""]
