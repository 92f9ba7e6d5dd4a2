"""Read and write manifest tables as Parquet on any storage URI."""

from __future__ import annotations

import io
from typing import Iterable, Sequence, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

import storage
from manifests.rows import Row

R = TypeVar("R", bound=Row)

MANIFEST_DIR = "manifests"
SUCCESS = "_SUCCESS"


def manifest_uri(out: str, table: str) -> str:
    return storage.join(out, MANIFEST_DIR, f"{table}.parquet")


def to_table(rows: Sequence[Row], cls: type[Row]) -> pa.Table:
    return pa.Table.from_pylist([r.to_dict() for r in rows], schema=cls.SCHEMA)


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    # No statistics that depend on write time; zstd keeps manifests small.
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def write_rows(uri: str, rows: Iterable[Row], cls: type[Row]) -> None:
    storage.write_bytes(uri, table_bytes(to_table(list(rows), cls)))


def read_table(uri: str, cls: type[Row] | None = None) -> pa.Table:
    t = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
    if cls is not None:
        # old manifests: add missing columns as nulls so readers see one schema
        for f in cls.SCHEMA:
            if f.name not in t.column_names:
                t = t.append_column(f.name, pa.nulls(len(t), f.type))
    return t


def read_rows(uri: str, cls: type[R]) -> list[R]:
    return [cls.from_dict(d) for d in read_table(uri).to_pylist()]


def concat_tables(tables: list[pa.Table], cls: type[Row]) -> pa.Table:
    if not tables:
        return cls.SCHEMA.empty_table()
    return pa.concat_tables([t.select(cls.SCHEMA.names).cast(cls.SCHEMA) for t in tables])


def resolve_table_uri(uri: str, table: str) -> str:
    """Accept a run output dir, its manifests dir, or a parquet file; return the table's parquet URI."""
    u = str(uri).rstrip("/")
    if u.endswith(".parquet"):
        return u
    if u.endswith("/" + MANIFEST_DIR) or u == MANIFEST_DIR:
        return storage.join(u, f"{table}.parquet")
    return manifest_uri(u, table)


def append_run(out: str, run) -> None:
    """Add one ``Run`` row to ``<out>/manifests/runs.parquet`` (the run history of an output)."""
    from manifests.rows import Run

    uri = manifest_uri(out, "runs")
    old = read_table(uri, Run) if storage.exists(uri) else Run.SCHEMA.empty_table()
    storage.write_bytes(uri, table_bytes(concat_tables([old, to_table([run], Run)], Run)))
