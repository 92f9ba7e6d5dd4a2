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


@lru_cache(maxsize=4)
def _parquet(uri: str):
    import pyarrow.parquet as pq

    if storage.is_local(uri):
        return pq.read_table(str(storage.local_path(uri)))
    return pq.read_table(io.BytesIO(storage.read_bytes(uri)))


def read_audio(rec: Recording) -> bytes:
    if not rec.member:
        return storage.read_bytes(rec.uri)
    if rec.member.startswith("parquet:"):
        _, row, column = rec.member.split(":", 2)
        table = _parquet(rec.uri)
        if column not in table.column_names:
            raise KeyError(f"{rec.uri} has no column {column!r} (columns: {', '.join(table.column_names)})")
        value = table.column(column)[int(row)].as_py()
        if isinstance(value, dict):
            data = value.get("bytes")
            if data is None and value.get("path"):
                return storage.read_bytes(value["path"])
            value = data
        if not isinstance(value, (bytes, bytearray)):
            raise ValueError(f"{rec.uri} row {row} column {column!r} holds no audio bytes")
        return bytes(value)
    raise ValueError(f"unknown member form {rec.member!r} for {rec.recording_id}")
