"""Read one recording's audio bytes, wherever its corpus keeps them.

* ``member == ""``: the file at ``uri`` (local path, s3://, http(s)://).
* ``member == "parquet:<row>:<column>"``: the audio bytes in a Parquet file's row (Hugging Face ``Audio`` columns
  are structs ``{bytes, path}``; a plain binary column works too). Used by the HF mirrors (IndicTTS, Kathbath,
  IndicVoices) so their parquet files are never exploded to disk.
"""

from __future__ import annotations

import io
from functools import lru_cache

import storage
from manifests.rows import Recording


@lru_cache(maxsize=8)
def _parquet(uri: str):
    """(ParquetFile, row-group start offsets): opening reads only the footer, not the audio."""
    import pyarrow.parquet as pq

    src = str(storage.local_path(uri)) if storage.is_local(uri) else io.BytesIO(storage.read_bytes(uri))
    pf = pq.ParquetFile(src)
    starts, n = [], 0
    for i in range(pf.metadata.num_row_groups):
        starts.append(n)
        n += pf.metadata.row_group(i).num_rows
    return pf, starts, n


def _parquet_value(uri: str, row: int, column: str):
    import bisect

    pf, starts, n = _parquet(uri)
    if column not in pf.schema_arrow.names:
        raise KeyError(f"{uri} has no column {column!r} (columns: {', '.join(pf.schema_arrow.names)})")
    if not 0 <= row < n:
        raise IndexError(f"{uri} has {n} rows; row {row} does not exist")
    g = bisect.bisect_right(starts, row) - 1
    table = pf.read_row_group(g, columns=[column])  # one row group, one column: bounded memory
    return table.column(column)[row - starts[g]].as_py()


def read_audio(rec: Recording) -> bytes:
    if not rec.member:
        return storage.read_bytes(rec.uri)
    if rec.member.startswith("parquet:"):
        _, row, column = rec.member.split(":", 2)
        value = _parquet_value(rec.uri, int(row), column)
        if isinstance(value, dict):
            data = value.get("bytes")
            if data is None and value.get("path"):
                return storage.read_bytes(value["path"])
            value = data
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{rec.uri} row {row} column {column!r} holds no audio bytes")
        return bytes(value)
    raise ValueError(f"unknown member form {rec.member!r} for {rec.recording_id}")
