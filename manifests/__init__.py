"""Typed manifest rows, their Parquet schemas, read/write, and stats (docs/DESIGN.md §3)."""

from manifests.io import (
    MANIFEST_DIR,
    SUCCESS,
    concat_tables,
    manifest_uri,
    read_rows,
    read_table,
    resolve_table_uri,
    to_table,
    write_rows,
)
from manifests.rows import ROW_TYPES, Diarization, Recording, Reject, Run, Sample, Shard, Turn

__all__ = [
    "ROW_TYPES",
    "Diarization",
    "Recording",
    "Reject",
    "Run",
    "Sample",
    "Shard",
    "Turn",
    "MANIFEST_DIR",
    "SUCCESS",
    "concat_tables",
    "manifest_uri",
    "read_rows",
    "read_table",
    "resolve_table_uri",
    "to_table",
    "write_rows",
]
