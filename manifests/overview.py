"""Queries over a run's manifests for the web page, the static report and the licence table.

:class:`ManifestDB` opens a run output (a directory or ``s3://`` prefix, its ``manifests/`` folder, or a
``samples.parquet``) with DuckDB over the Parquet files: summaries are ``GROUP BY`` queries, sample pages are
``LIMIT/OFFSET`` queries, so a page stays fast on a manifest of millions of samples. On ``s3://`` the Parquet
files are downloaded to a temporary directory first. Tables that are missing (an old run without rejects, a
run without token shards) read as empty; columns missing from old manifests read as NULL.

Token shards are optional (docs/DESIGN.md §4): they are found from ``shards`` rows with ``kind == 'tokens'`` and/or an
optional ``manifests/tokens.parquet`` (one row per token sample: ``sample_id``, ``codec_id``, ``shard``, and when
known ``frames``, ``n_codebooks``, ``codebook_size``, ``duration_s``), and/or ``samples`` rows with a
``codec_id`` (an encode output that reuses the Sample schema). Codebook usage is measured on the
``<key>.codes.npy`` members (int16 ``[channels × codebooks, frames]``) of at most ``max_scan`` samples per codec.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import storage
from manifests.io import MANIFEST_DIR
from manifests.rows import Recording, Reject, Run, Sample, Shard

TABLES: dict[str, pa.Schema] = {
    "samples": Sample.SCHEMA,
    "shards": Shard.SCHEMA,
    "rejects": Reject.SCHEMA,
    "recordings": Recording.SCHEMA,
    "runs": Run.SCHEMA,
}
NO_LICENSE = "(none)"
NO_SPEAKER = "(unknown)"
TOP_SPEAKERS = 30  # speakers listed by the page, the report and `manifests stats`
HIST_FIELDS = ("duration_s", "snr_db", "speech_ratio", "clipping", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak",
               "bandwidth_hz", "loudness_lufs")
# columns a sample page returns (text is cut to TEXT_CHARS; /api/sample/<id> returns the whole row)
LIST_COLUMNS = ("sample_id", "kind", "source", "recording_id", "start_s", "end_s", "duration_s", "channels",
                "speakers", "license", "snr_db", "speech_ratio", "split", "shard", "dnsmos_ovrl", "bandwidth_hz",
                "loudness_lufs")
TEXT_CHARS = 160
MAX_LIMIT = 500
MAX_INT = 2**63 - 1  # DuckDB BIGINT: a larger offset is a 400, not a ConversionException
COUNT_CAP = 10_000  # text-search counts stop here


def _clean(v: Any) -> Any:
    """JSON-safe values: NaN/inf -> None, numpy scalars -> Python, nested lists/dicts alike."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        try:
            return _clean(v.item())
        except (ValueError, AttributeError):
            return v
    return v


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _like_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class SampleQuery:
    """Filters of a sample page. Empty strings mean "any"."""

    source: str = ""
    kind: str = ""
    speaker: str = ""
    license: str = ""
    split: str = ""
    recording_id: str = ""
    q: str = ""  # substring of the text or the sample id (case-insensitive)
    sort: str = ""  # "" = manifest order; or one of SORTABLE, optionally prefixed with "-" for descending
    limit: int = 50
    offset: int = 0

    SORTABLE = ("sample_id", "duration_s", "snr_db", "speech_ratio", "start_s", "source", "kind", "dnsmos_ovrl",
                "bandwidth_hz", "loudness_lufs")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SampleQuery:
        def one(k: str, default: str = "") -> str:
            v = params.get(k, default)
            if isinstance(v, list):
                v = v[0] if v else default
            return str(v).strip()

        def num(k: str, default: int) -> int:
            try:
                v = int(one(k, str(default)))
            except ValueError:
                raise ValueError(f"{k} must be an integer") from None
            if not -MAX_INT <= v <= MAX_INT:
                raise ValueError(f"{k} must be between 0 and {MAX_INT}")
            return v

        return cls(source=one("source"), kind=one("kind"), speaker=one("speaker"), license=one("license"),
                   split=one("split"), recording_id=one("recording_id"), q=one("q"), sort=one("sort"),
                   limit=max(1, min(MAX_LIMIT, num("limit", 50))), offset=max(0, num("offset", 0)))

    def where(self) -> tuple[str, list]:
        conds, params = [], []
        for col in ("source", "kind", "split", "recording_id"):
            v = getattr(self, col)
            if v:
                conds.append(f"{col} = ?")
                params.append(v)
        if self.license:
            if self.license == NO_LICENSE:
                conds.append("(license IS NULL OR license = '')")
            else:
                conds.append("license = ?")
                params.append(self.license)
        if self.speaker:
            if self.speaker == NO_SPEAKER:
                conds.append("(speakers IS NULL OR len(speakers) = 0)")
            else:
                conds.append("list_contains(speakers, ?)")
                params.append(self.speaker)
        if self.q:
            pat = f"%{_like_escape(self.q)}%"
            # ILIKE only when the query has cased letters: on scripts without case (Telugu) LIKE is ~4x faster
            op = "ILIKE" if self.q.lower() != self.q.upper() else "LIKE"
            conds.append(f"(text {op} ? ESCAPE '\\' OR sample_id {op} ? ESCAPE '\\')")
            params += [pat, pat]
        return (" WHERE " + " AND ".join(conds)) if conds else "", params

    def order(self) -> str:
        if not self.sort:
            return ""
        desc = self.sort.startswith("-")
        col = self.sort.lstrip("-")
        if col not in self.SORTABLE:
            raise ValueError(f"sort: {col!r} is not one of {', '.join(self.SORTABLE)}")
        return f" ORDER BY {col} {'DESC' if desc else 'ASC'} NULLS LAST, sample_id"

    def count_key(self) -> tuple:
        return (self.source, self.kind, self.speaker, self.license, self.split, self.recording_id, self.q)


def resolve_shard(shard: str, base: str, *, root_only: bool = False) -> str:
    """A sample's shard URI; if the run was moved since it was written (the manifest keeps absolute paths),
    the same ``segments/…`` or ``tokens/…`` path under ``base``, the run's directory now (for a token root
    ``<run>/tokens/<codec>``, under ``<run>`` too: its samples' audio is in the run's segment shards).

    ``root_only``: never a shard outside those roots (``PermissionError`` when that is all the manifest names)."""
    if not shard:
        raise FileNotFoundError("sample has no shard")
    roots = dataset_roots(base)

    def ok(uri: str) -> bool:
        return not root_only or any(inside(uri, r) for r in roots)

    if ok(shard) and storage.exists(shard):
        return shard
    for root in roots:
        for part in ("/segments/", "/tokens/"):
            if part in shard:
                alt = storage.join(root, part.strip("/"), shard.split(part, 1)[1])
                if alt != shard and ok(alt) and storage.exists(alt):
                    return alt
    if not ok(shard):
        raise PermissionError(f"shard {shard} is outside the dataset root {base}; not served (serve it with "
                              "--allow-outside-root if that is intended)")
    raise FileNotFoundError(f"shard {shard} does not exist (nor under {base})")


def dataset_roots(base: str) -> list[str]:
    """``base``, and the run directory when ``base`` is a run's token root ``<run>/tokens/<codec>``."""
    parts = str(base).rstrip("/").rsplit("/", 2)
    return [base, parts[0]] if len(parts) == 3 and parts[1] == "tokens" and parts[0] else [base]


def inside(uri: str, root: str) -> bool:
    """True when ``uri`` lies under the directory or prefix ``root`` (symlinks and '..' resolved locally)."""
    if storage.is_local(uri) and storage.is_local(root):
        return storage.local_path(uri).resolve().is_relative_to(storage.local_path(root).resolve())
    if storage.is_local(uri) != storage.is_local(root):
        return False
    base = str(root).rstrip("/") + "/"
    return str(uri).startswith(base) and "/../" not in str(uri)[len(base) - 1:]


def run_dir(uri: str) -> str:
    """The run output directory for a URI that may name the run, its manifests/ folder or one parquet file."""
    return ManifestDB._base_dir(str(uri).rstrip("/"))


class ShardReader:
    """Read single members of segment/token shards by name, for rows that do not say where their sample is (manifests
    written before ``tar_offset``/``tar_bytes``; a token sample's audio in its segment shard; codebook scans).

    A local tar is indexed once (member name -> data offset, size) and members are read with seek. An ``s3://``
    shard is downloaded into a bounded local cache first, since finding a member from the tar headers alone would
    take one ranged read per member. Rows with ``tar_offset`` are read with one ranged read instead
    (:meth:`ManifestDB.members`)."""

    def __init__(self, cache_dir: str | None = None, max_cached: int = 8, max_indexes: int = 256) -> None:
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, dict[str, tuple[int, int]]] = OrderedDict()
        self._local: OrderedDict[str, str] = OrderedDict()
        self._max_cached = max_cached
        self._max_indexes = max_indexes
        self._own_tmp = None
        if cache_dir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="matalu-shards-")
            cache_dir = self._own_tmp.name
        self._cache_dir = cache_dir

    def close(self) -> None:
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

    def _local_path(self, uri: str) -> str:
        if storage.is_local(uri):
            return str(storage.local_path(uri))
        with self._lock:
            p = self._local.get(uri)
            if p is not None and os.path.exists(p):
                self._local.move_to_end(uri)
                return p
        data = storage.read_bytes(uri)
        fd, p = tempfile.mkstemp(prefix="shard-", suffix=".tar", dir=self._cache_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with self._lock:
            self._local[uri] = p
            while len(self._local) > self._max_cached:
                _, old = self._local.popitem(last=False)
                try:
                    os.unlink(old)
                except FileNotFoundError:
                    pass
        return p

    def index(self, uri: str) -> tuple[str, dict[str, tuple[int, int]]]:
        path = self._local_path(uri)
        with self._lock:
            idx = self._indexes.get(path)
            if idx is not None:
                self._indexes.move_to_end(path)
                return path, idx
        idx = {}
        with tarfile.open(path, "r:") as tf:
            for ti in tf:
                if ti.isreg():
                    idx[ti.name.rsplit("/", 1)[-1]] = (ti.offset_data, ti.size)
        with self._lock:
            self._indexes[path] = idx
            while len(self._indexes) > self._max_indexes:
                self._indexes.popitem(last=False)
        return path, idx

    def member(self, uri: str, name: str) -> bytes:
        path, idx = self.index(uri)
        if name not in idx:
            raise KeyError(f"{name} is not in shard {uri}")
        off, size = idx[name]
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(size)

    def keys(self, uri: str) -> list[str]:
        return sorted({n.partition(".")[0] for n in self.index(uri)[1]})


class ManifestDB:
    """DuckDB over a run's manifests: views ``samples_all`` (every column, from the Parquet file), ``samples`` (all
    columns but ``turns``), ``shards``, ``rejects``, ``recordings``, ``runs`` and, when present, ``tokens``.

    ``materialize``: ``"background"`` (default) serves from the Parquet file at once and meanwhile copies the
    sample columns the pages filter and sort on into a DuckDB table in a temporary database file (compressed,
    on disk, cached by DuckDB's buffer manager); when that is done ``samples`` points at the table, which makes
    pages 10–50x faster on large manifests. ``"now"`` does the copy before returning, ``"never"`` skips it.
    """

    def __init__(self, uri: str, *, materialize: str = "background") -> None:
        if materialize not in ("background", "now", "never"):
            raise ValueError("materialize must be 'background', 'now' or 'never'")
        self.uri = str(uri).rstrip("/")
        self._tmp = tempfile.TemporaryDirectory(prefix="matalu-manifests-")
        self.base = self._base_dir(self.uri)  # run output dir (shards are looked up relative to it if moved)
        self.present: dict[str, bool] = {}
        self.paths: dict[str, str] = {}
        self.shards = ShardReader(cache_dir=self._tmp.name)
        self._cache: dict[str, Any] = {}
        self._counts: OrderedDict[tuple, tuple[int, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self.ready = threading.Event()  # set when ``samples`` is the materialized table (or never will be)
        self.extra_ready = threading.Event()  # set when full rows are point lookups (never set without it)
        self._loader: threading.Thread | None = None
        self._load_cur = None
        self.load_error: str | None = None
        import duckdb

        self.con = duckdb.connect(os.path.join(self._tmp.name, "manifests.duckdb"))
        self.con.execute(f"SET temp_directory = {_sql_str(os.path.join(self._tmp.name, 'spill'))}")
        for name, schema in TABLES.items():
            self._attach(name, schema)
        if not self.present["samples"]:
            self.close()
            raise FileNotFoundError(f"no samples manifest at {self._table_uri('samples')}")
        lean = ", ".join(f'"{f.name}"' for f in Sample.SCHEMA if f.name not in ("turns", "sha256"))
        self._lean_select = f"SELECT {lean} FROM samples_all"
        self.con.execute(f"CREATE VIEW samples AS {self._lean_select}")
        tok = self._table_uri("tokens")
        self.has_tokens_table = storage.exists(tok)
        if self.has_tokens_table:
            self.paths["tokens"] = self._fetch(tok, "tokens")
            self.con.execute(f"CREATE VIEW tokens AS SELECT * FROM read_parquet({_sql_str(self.paths['tokens'])})")
        if materialize == "never":
            self.ready.set()
        elif materialize == "now":
            self._materialize()
        else:
            self._loader = threading.Thread(target=self._materialize, name="matalu-manifests-load", daemon=True)
            self._loader.start()

    def _materialize(self) -> None:
        """Phase 1: the page columns into ``samples_lean`` (+ an index on sample_id), then ``samples`` points at
        it and :attr:`ready` is set. Phase 2: ``turns`` and ``sha256`` into ``samples_extra`` (indexed), so a
        full row is a point lookup; then :attr:`extra_ready` is set."""
        cur = self._load_cur = self.con.cursor()
        try:
            cur.execute(f"CREATE TABLE samples_lean AS {self._lean_select}")
            cur.execute("CREATE INDEX samples_lean_id ON samples_lean (sample_id)")
            cur.execute("CREATE OR REPLACE VIEW samples AS SELECT * FROM samples_lean")
            self.ready.set()
            cur.execute("CREATE TABLE samples_extra AS SELECT sample_id, turns, sha256 FROM samples_all")
            cur.execute("CREATE INDEX samples_extra_id ON samples_extra (sample_id)")
            self.extra_ready.set()
        except Exception as e:  # noqa: BLE001 - interrupted by close(), or out of disk: keep serving the views
            self.load_error = f"{type(e).__name__}: {e}"
        finally:
            self._load_cur = None
            cur.close()
            self.ready.set()

    def wait_ready(self, timeout: float | None = None, full: bool = False) -> bool:
        """Wait for phase 1 (fast pages); with ``full``, for phase 2 too (fast full rows)."""
        if full and self._loader is not None:
            self._loader.join(timeout)
            return not self._loader.is_alive()
        return self.ready.wait(timeout)

    @property
    def materialized(self) -> bool:
        return self.ready.is_set() and self.load_error is None and bool(
            self.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'samples_lean'"))

    # -- setup --------------------------------------------------------------------------------------------
    @staticmethod
    def _base_dir(u: str) -> str:
        if u.endswith(".parquet"):
            u = u.rsplit("/", 1)[0] if "/" in u else "."
        if u.endswith("/" + MANIFEST_DIR) or u == MANIFEST_DIR:
            u = u[: -len(MANIFEST_DIR)].rstrip("/") or "."
        return u

    def _table_uri(self, table: str) -> str:
        if self.uri.endswith(".parquet"):
            if table == "samples":
                return self.uri
            return storage.join(self.uri.rsplit("/", 1)[0], f"{table}.parquet")
        return storage.join(self.base, MANIFEST_DIR, f"{table}.parquet")

    def _fetch(self, uri: str, name: str) -> str:
        if storage.is_local(uri):
            return str(storage.local_path(uri).resolve())
        p = os.path.join(self._tmp.name, f"{name}.parquet")
        with open(p, "wb") as f:
            f.write(storage.read_bytes(uri))
        return p

    def _attach(self, name: str, schema: pa.Schema) -> None:
        uri = self._table_uri(name)
        present = storage.exists(uri)
        self.present[name] = present
        if present:
            path = self._fetch(uri, name)
        else:
            path = os.path.join(self._tmp.name, f"{name}.empty.parquet")
            pq.write_table(schema.empty_table(), path)
        self.paths[name] = path
        names = pq.read_schema(path).names
        cols = []
        for f in schema:
            if f.name in names:
                cols.append(f'"{f.name}"')
            else:  # an old manifest without this column: typed NULLs
                cols.append(f'NULL::{self._duck_type(f)} AS "{f.name}"')
        cols += [f'"{n}"' for n in names if n not in schema.names]
        view = "samples_all" if name == "samples" else name
        self.con.execute(f"CREATE VIEW {view} AS SELECT {', '.join(cols)} FROM read_parquet({_sql_str(path)})")

    @staticmethod
    def _duck_type(f: pa.Field) -> str:
        t = f.type
        if pa.types.is_string(t):
            return "VARCHAR"
        if pa.types.is_floating(t):
            return "DOUBLE"
        if pa.types.is_integer(t):
            return "BIGINT"
        if pa.types.is_list(t):
            v = t.value_type
            if pa.types.is_string(v):
                return "VARCHAR[]"
            if pa.types.is_struct(v):
                return "STRUCT(role VARCHAR, speaker VARCHAR, start_s DOUBLE, end_s DOUBLE, text VARCHAR)[]"
        return "VARCHAR"

    def close(self) -> None:
        cur = self._load_cur
        if cur is not None:
            try:
                cur.interrupt()
            except Exception:  # noqa: BLE001
                pass
        if self._loader is not None:
            self._loader.join(timeout=30)
            self._loader = None
        try:
            self.con.close()
        finally:
            self.shards.close()
            self._tmp.cleanup()

    def __enter__(self) -> ManifestDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- query helpers ------------------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable | None = None) -> list[dict]:
        cur = self.con.cursor()  # one cursor per call: DuckDB connections are not shared across threads
        try:
            res = cur.execute(sql, list(params or []))
            names = [d[0] for d in res.description]
            return [dict(zip(names, map(_clean, row))) for row in res.fetchall()]
        finally:
            cur.close()

    def scalar(self, sql: str, params: Iterable | None = None) -> Any:
        rows = self.query(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def _cached(self, key: str, fn):
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        v = fn()
        with self._lock:
            self._cache[key] = v
        return v

    # -- summaries ----------------------------------------------------------------------------------------
    def hours_by(self, what: str, top: int | None = None) -> list[dict]:
        """Samples and hours grouped by ``source``, ``kind``, ``license``, ``split`` or ``speaker``.

        A sample counts once for each of its speakers (a dialog is credited to both), so speaker hours
        can sum to more than the total."""
        lim = f" LIMIT {int(top)}" if top else ""
        if what == "speaker":
            sql = (f"SELECT sp AS speaker, count(*) AS samples, coalesce(sum(duration_s), 0) / 3600 AS hours FROM "
                   f"(SELECT unnest(CASE WHEN speakers IS NULL OR len(speakers) = 0 THEN ['{NO_SPEAKER}'] "
                   f"ELSE speakers END) AS sp, duration_s FROM samples) GROUP BY sp ORDER BY hours DESC, speaker{lim}")
        elif what == "license":
            sql = (f"SELECT coalesce(nullif(license, ''), '{NO_LICENSE}') AS license, count(*) AS samples, "
                   f"coalesce(sum(duration_s), 0) / 3600 AS hours FROM samples GROUP BY 1 ORDER BY hours DESC, license{lim}")
        elif what in ("source", "kind", "split"):
            sql = (f"SELECT coalesce({what}, '') AS {what}, count(*) AS samples, coalesce(sum(duration_s), 0) / 3600 AS hours "
                   f"FROM samples GROUP BY 1 ORDER BY hours DESC, {what}{lim}")
        else:
            raise ValueError(f"cannot group hours by {what!r}")
        return self.query(sql)

    def totals(self) -> dict:
        def f() -> dict:
            s = self.query("SELECT count(*) AS n_samples, coalesce(sum(duration_s), 0) / 3600 AS hours, "
                           "count(DISTINCT source) AS n_sources, count(DISTINCT recording_id) AS n_recordings_used "
                           "FROM samples")[0]
            sh = self.query("SELECT count(*) AS n_shards, coalesce(sum(bytes), 0) AS shard_bytes FROM shards "
                            "WHERE coalesce(kind, 'segments') <> 'tokens'")[0]
            s.update(sh)
            s["n_rejects"] = self.scalar("SELECT count(*) FROM rejects")
            s["n_recordings"] = self.scalar("SELECT count(*) FROM recordings")
            s["recording_hours"] = self.scalar("SELECT coalesce(sum(duration_s), 0) / 3600 FROM recordings")
            runs = self.query("SELECT run_id, command, started, ended, versions FROM runs ORDER BY started")
            s["runs"] = runs
            s["uri"] = self.uri
            s["tables"] = {k: v for k, v in self.present.items()}
            return s

        return self._cached("totals", f)

    def summary(self, top_speakers: int = TOP_SPEAKERS) -> dict:
        def f() -> dict:
            d = dict(self.totals())
            d["by_source"] = self.hours_by("source")
            d["by_kind"] = self.hours_by("kind")
            d["by_license"] = self.hours_by("license")
            d["by_speaker"] = self.hours_by("speaker", top=top_speakers)
            d["n_speakers"] = self.scalar(
                "SELECT count(DISTINCT sp) FROM (SELECT unnest(speakers) AS sp FROM samples)") or 0
            return d

        return self._cached(f"summary:{top_speakers}", f)

    def histogram(self, field: str, bins: int = 30) -> dict:
        if field not in HIST_FIELDS:
            raise ValueError(f"histogram field must be one of {', '.join(HIST_FIELDS)}")
        bins = max(1, min(200, int(bins)))

        def f() -> dict:
            st = self.query(f"SELECT min({field}) AS lo, max({field}) AS hi, count({field}) AS n, "
                            f"count(*) - count({field}) AS missing, avg({field}) AS mean, "
                            f"median({field}) AS median FROM samples WHERE {field} IS NULL OR isfinite({field})")[0]
            lo, hi = st["lo"], st["hi"]
            if lo is None or hi is None:
                return {"field": field, "edges": [], "counts": [], "n": 0, "missing": st["missing"],
                        "mean": None, "median": None}
            if hi <= lo:
                hi = lo + 1.0
            w = (hi - lo) / bins
            rows = self.query(f"SELECT least(CAST(floor(({field} - ?) / ?) AS BIGINT), ?) AS b, count(*) AS c "
                              f"FROM samples WHERE {field} IS NOT NULL AND isfinite({field}) GROUP BY b ORDER BY b",
                              [lo, w, bins - 1])
            counts = [0] * bins
            for r in rows:
                counts[int(r["b"])] += int(r["c"])
            return {"field": field, "edges": [lo + i * w for i in range(bins + 1)], "counts": counts,
                    "n": st["n"], "missing": st["missing"], "mean": st["mean"], "median": st["median"]}

        return self._cached(f"hist:{field}:{bins}", f)

    def shard_rows(self, limit: int = 1000, offset: int = 0, kind: str = "") -> dict:
        where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
        total = self.scalar(f"SELECT count(*) FROM shards {where}", params)
        rows = self.query(f"SELECT uri, kind, sample_kind, source, codec_id, n_samples, seconds, bytes, sha256, created_by "
                          f"FROM shards {where} ORDER BY kind, uri LIMIT ? OFFSET ?", params + [int(limit), int(offset)])
        return {"total": total, "limit": limit, "offset": offset, "rows": rows}

    def reject_summary(self, examples: int = 3) -> list[dict]:
        def f() -> list[dict]:
            groups = self.query("SELECT stage, reason, count(*) AS count, sum(seconds) AS seconds, "
                                "coalesce(sum(seconds), 0) / 3600 AS hours FROM rejects "
                                "GROUP BY stage, reason ORDER BY count DESC, stage, reason")
            rec_h = self.totals()["recording_hours"] or 0.0
            for g in groups:  # what each reason removed, as a share of the decoded input hours
                g["share"] = g["hours"] / rec_h if rec_h else None
            ex = self.query("SELECT stage, reason, item, detail, source FROM (SELECT *, row_number() OVER "
                            "(PARTITION BY stage, reason ORDER BY item) AS rn FROM rejects) WHERE rn <= ? "
                            "ORDER BY stage, reason, item", [int(examples)])
            by: dict[tuple, list] = {}
            for e in ex:
                by.setdefault((e["stage"], e["reason"]), []).append(
                    {"item": e["item"], "detail": e["detail"], "source": e["source"]})
            for g in groups:
                g["examples"] = by.get((g["stage"], g["reason"]), [])
            return groups

        return self._cached(f"rejects:{examples}", f)

    def filter_options(self, top_speakers: int = 500) -> dict:
        def f() -> dict:
            def distinct(col: str) -> list[str]:
                return [r["v"] for r in self.query(f"SELECT DISTINCT coalesce({col}, '') AS v FROM samples ORDER BY v")]

            lic = [r["license"] for r in self.hours_by("license")]
            spk = [r["speaker"] for r in self.hours_by("speaker", top=top_speakers)]
            return {"source": distinct("source"), "kind": distinct("kind"), "split": distinct("split"),
                    "license": sorted(lic), "speaker": spk}

        return self._cached("filters", f)

    # -- samples ------------------------------------------------------------------------------------------
    def samples(self, q: SampleQuery) -> dict:
        """One page of samples. ``total`` is exact, except for text searches, whose count stops at
        ``COUNT_CAP`` (``total_capped`` is then true): a substring count over millions of texts is a full scan."""
        where, params = q.where()
        key = q.count_key()
        with self._lock:
            hit = self._counts.get(key)
        if hit is None:
            if q.q:
                n = int(self.scalar(f"SELECT count(*) FROM (SELECT 1 FROM samples{where} LIMIT {COUNT_CAP + 1})", params))
                hit = (min(n, COUNT_CAP), n > COUNT_CAP)
            else:
                hit = (int(self.scalar(f"SELECT count(*) FROM samples{where}", params)), False)
            with self._lock:
                self._counts[key] = hit
                while len(self._counts) > 256:
                    self._counts.popitem(last=False)
        total, capped = hit
        cols = ", ".join(LIST_COLUMNS)
        rows = self.query(f"SELECT {cols}, left(text, {TEXT_CHARS}) AS text, length(text) AS text_len "
                          f"FROM samples{where}{q.order()} LIMIT ? OFFSET ?", params + [q.limit, q.offset])
        if capped and q.offset + len(rows) >= total and len(rows) == q.limit:
            total = q.offset + len(rows) + 1  # paging past the cap: there is at least one more
        return {"total": total, "total_capped": capped, "limit": q.limit, "offset": q.offset, "rows": rows}

    def _lean_row(self, sample_id: str) -> dict | None:
        rows = self.query("SELECT * FROM samples WHERE sample_id = ? LIMIT 1", [sample_id])
        return rows[0] if rows else None

    def sample(self, sample_id: str) -> dict | None:
        """One sample's whole manifest row (turns included)."""
        if self.extra_ready.is_set():
            row = self._lean_row(sample_id)
            if row is None:
                return None
            ex = self.query("SELECT turns, sha256 FROM samples_extra WHERE sample_id = ? LIMIT 1", [sample_id])
            row.update(ex[0] if ex else {"turns": [], "sha256": ""})
            order = [f.name for f in Sample.SCHEMA]
            return {k: row[k] for k in order if k in row} | {k: v for k, v in row.items() if k not in order}
        rows = self.query("SELECT * FROM samples_all WHERE sample_id = ? LIMIT 1", [sample_id])
        return rows[0] if rows else None

    allow_outside_root = True  # the web server sets False: it serves only shards under the dataset root

    def resolve_shard(self, shard: str) -> str:
        return resolve_shard(shard, self.base, root_only=not self.allow_outside_root)

    def members(self, row: dict) -> dict[str, bytes]:
        """A sample's members ``{ext: bytes}`` (``flac``/``codes.npy`` and ``json``) from its shard: one ranged read
        of ``tar_bytes`` at ``tar_offset`` when the row has them (a few hundred kB of a shard of up to 256 MB),
        else by name through :class:`ShardReader`."""
        sid = row["sample_id"]
        shard = self.resolve_shard(row["shard"])
        if row.get("tar_offset") is not None and row.get("tar_bytes"):
            return storage.read_sample_at(shard, row["tar_offset"], row["tar_bytes"], sid)
        out = {}
        for ext in ("flac", "json"):
            try:
                out[ext] = self.shards.member(shard, f"{sid}.{ext}")
            except KeyError:
                pass
        return out

    def audio_bytes(self, sample_id: str) -> tuple[bytes, dict]:
        """The sample's FLAC bytes from its shard, and its manifest row. A token sample (``matalu encode``
        output) has no audio of its own: its JSON names the segment shard it was encoded from."""
        row = self._lean_row(sample_id)
        if row is None:
            raise KeyError(f"no sample {sample_id!r}")
        members = self.members(row)
        if "flac" in members:
            return members["flac"], row
        try:
            seg = json.loads(members["json"]).get("segment_shard") or ""
            return self.shards.member(self.resolve_shard(seg), f"{sample_id}.flac"), row
        except (KeyError, ValueError, FileNotFoundError):
            raise KeyError(f"sample {sample_id!r} has no audio in {row['shard']}") from None

    def wav_bytes(self, sample_id: str) -> tuple[bytes, dict]:
        """The sample's audio as 16-bit PCM WAV: 1 channel for mono, 2 (ch0 system, ch1 user) for dialog."""
        import soundfile as sf

        flac, row = self.audio_bytes(sample_id)
        data, sr = sf.read(io.BytesIO(flac), dtype="int16", always_2d=True)
        buf = io.BytesIO()
        sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
        return buf.getvalue(), row

    # -- tokens -------------------------------------------------------------------------------------------
    def tokens(self, max_scan: int = 200) -> dict:
        """Token shards per codec: shards, samples, seconds, bytes, frames, codebooks and codebook usage.

        Found in this URI's own tables (``shards`` rows with ``kind='tokens'``, ``samples`` rows with a
        ``codec_id``, an optional ``manifests/tokens.parquet``) and in ``<run>/tokens/<codec_id>/manifests/``
        (what ``matalu encode`` writes). Usage is measured on at most ``max_scan`` samples per codec; frames come
        from a ``frames`` column when there is one, else from the frame rule ``ceil(duration_s × frame_rate)``
        with the frame rate read from the token JSON, else from the scanned samples."""
        return self._cached(f"tokens:{max_scan}", lambda: self._tokens(max_scan))

    def _encode_dirs(self) -> list[tuple[str, str, str]]:
        """(codec dir name, shards parquet, samples parquet) for each ``<run>/tokens/<codec>/manifests/``."""
        root = storage.join(self.base, "tokens")
        out = []
        try:
            files = storage.list_files(root, ".parquet")
        except Exception:  # noqa: BLE001 - an unlistable prefix just means no token manifests
            return []
        for f in files:
            rest = f[len(root) + 1:]
            parts = rest.split("/")
            if len(parts) == 3 and parts[1] == MANIFEST_DIR and parts[2] == "shards.parquet":
                samples = storage.join(root, parts[0], MANIFEST_DIR, "samples.parquet")
                out.append((parts[0], f, samples if storage.exists(samples) else ""))
        return out

    def _tokens(self, max_scan: int) -> dict:
        codecs: dict[str, dict] = {}
        rel: dict[str, str] = {}  # codec -> SQL relation of its token samples (sample_id, shard, duration_s)
        for r in self.query("SELECT coalesce(codec_id, '') AS codec_id, count(*) AS shards, sum(n_samples) AS samples, "
                            "sum(seconds) AS seconds, sum(bytes) AS bytes FROM shards WHERE kind = 'tokens' GROUP BY 1 ORDER BY 1"):
            codecs[r["codec_id"]] = dict(r)
        for r in self.query("SELECT codec_id, count(*) AS samples, sum(duration_s) AS seconds FROM samples "
                            "WHERE codec_id IS NOT NULL AND codec_id <> '' GROUP BY 1"):
            d = codecs.setdefault(r["codec_id"], {"codec_id": r["codec_id"]})
            d.setdefault("samples", r["samples"])
            if d.get("seconds") is None:
                d["seconds"] = r["seconds"]
            rel[r["codec_id"]] = f"(SELECT sample_id, shard, duration_s FROM samples WHERE codec_id = {_sql_str(r['codec_id'])})"
        if self.has_tokens_table:
            cols = set(pq.read_schema(self.paths["tokens"]).names)
            if {"codec_id", "sample_id"} <= cols:
                aggs = ["count(*) AS samples"]
                for c, a in (("frames", "sum(frames) AS frames"), ("duration_s", "sum(duration_s) AS seconds"),
                             ("n_codebooks", "max(n_codebooks) AS n_codebooks"),
                             ("codebook_size", "max(codebook_size) AS codebook_size")):
                    if c in cols:
                        aggs.append(a)
                for r in self.query(f"SELECT coalesce(codec_id, '') AS codec_id, {', '.join(aggs)} FROM tokens GROUP BY 1"):
                    d = codecs.setdefault(r["codec_id"], {"codec_id": r["codec_id"]})
                    for k, v in r.items():
                        if k != "codec_id" and (d.get(k) is None or k in ("frames", "n_codebooks", "codebook_size")):
                            d[k] = v
                    if "shard" in cols:
                        dur = "duration_s" if "duration_s" in cols else "NULL::DOUBLE AS duration_s"
                        rel.setdefault(r["codec_id"], f"(SELECT sample_id, shard, {dur} FROM tokens "
                                                      f"WHERE coalesce(codec_id, '') = {_sql_str(r['codec_id'])})")
        for name, shards_uri, samples_uri in self._encode_dirs():
            sp = self._fetch(shards_uri, f"tok-{len(rel)}-shards")
            agg = self.query(f"SELECT coalesce(codec_id, '') AS codec_id, count(*) AS shards, sum(n_samples) AS samples, "
                             f"sum(seconds) AS seconds, sum(bytes) AS bytes FROM read_parquet({_sql_str(sp)}) "
                             f"WHERE kind = 'tokens' GROUP BY 1")
            for r in agg:
                codec = r["codec_id"] or name
                if codec in codecs:  # this URI's own tables already describe it
                    continue
                codecs[codec] = dict(r, codec_id=codec, manifests=storage.join(self.base, "tokens", name, MANIFEST_DIR))
                if samples_uri:
                    p = self._fetch(samples_uri, f"tok-{len(rel)}-samples")
                    rel[codec] = f"(SELECT sample_id, shard, duration_s FROM read_parquet({_sql_str(p)}))"
                    row = self.query(f"SELECT count(*) AS n, sum(duration_s) AS s FROM {rel[codec]}")[0]
                    codecs[codec]["samples"], codecs[codec]["seconds"] = row["n"], row["s"]
        for codec, d in codecs.items():
            if codec in rel:
                members = [(x["sample_id"], x["shard"]) for x in self.query(
                    f"SELECT sample_id, shard FROM {rel[codec]} ORDER BY shard, sample_id LIMIT ?", [max_scan])]
            else:  # only shard rows: scan their members
                shards = [r["uri"] for r in self.query(
                    "SELECT uri FROM shards WHERE kind = 'tokens' AND coalesce(codec_id, '') = ? ORDER BY uri", [codec])]
                members = self._members_of(shards, max_scan)
            d.update(self._codebook_usage(members, d))
            if d.get("frames_source") == "scan" and d.get("frame_rate") and codec in rel:
                fr = float(d["frame_rate"])
                n = self.scalar(f"SELECT sum(ceil(round(duration_s * {fr!r}, 6))) FROM {rel[codec]}")
                if n is not None:
                    d["frames"], d["frames_source"], d["frames_exact"] = int(n), "durations", True
        return {"available": bool(codecs), "codecs": [codecs[k] for k in sorted(codecs)], "max_scan": max_scan}

    def _members_of(self, shards: list[str], limit: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for s in shards:
            try:
                keys = self.shards.keys(self.resolve_shard(s))
            except (FileNotFoundError, PermissionError, tarfile.TarError):
                continue
            out += [(k, s) for k in keys]
            if len(out) >= limit:
                break
        return out[:limit]

    def _codebook_usage(self, members: list[tuple[str, str]], info: dict) -> dict:
        import numpy as np

        counts: list[np.ndarray] = []
        frames = 0
        scanned = 0
        errors = 0
        n_cb = info.get("n_codebooks")
        card = info.get("codebook_size")
        frame_rate = info.get("frame_rate")
        for sid, shard in members:
            try:
                path = self.resolve_shard(shard)
                codes = np.load(io.BytesIO(self.shards.member(path, f"{sid}.codes.npy")), allow_pickle=False)
            except (FileNotFoundError, KeyError, ValueError, OSError, tarfile.TarError):
                errors += 1
                continue
            meta = {}
            try:
                meta = json.loads(self.shards.member(path, f"{sid}.json"))
            except (KeyError, ValueError):
                pass
            if codes.ndim == 1:
                codes = codes[None]
            k = meta.get("num_codebooks") or meta.get("n_codebooks") or meta.get("codebooks") or n_cb
            ch = int(meta.get("channels") or 1)
            if not k:
                k = codes.shape[0] // ch if codes.shape[0] % ch == 0 else codes.shape[0]
            k = int(k)
            n_cb = n_cb or k
            card = card or meta.get("codebook_size") or meta.get("cardinality")
            frame_rate = frame_rate or meta.get("frame_rate")
            frames += int(codes.shape[-1])
            scanned += 1
            c = codes.reshape(-1, k, codes.shape[-1]) if codes.shape[0] % k == 0 else codes[None]
            for i in range(c.shape[1]):
                v = c[:, i, :].astype(np.int64).ravel()
                v = v[v >= 0]
                bc = np.bincount(v) if v.size else np.zeros(1, np.int64)
                while len(counts) <= i:
                    counts.append(np.zeros(1, np.int64))
                if len(bc) > len(counts[i]):
                    bc[: len(counts[i])] += counts[i]
                    counts[i] = bc
                else:
                    counts[i][: len(bc)] += bc
        usage = []
        for i, cnt in enumerate(counts):
            size = int(card) if card else len(cnt)
            tot = cnt.sum()
            p = cnt[cnt > 0] / max(tot, 1)
            ent = float(-(p * np.log(p)).sum()) if p.size else 0.0
            distinct = int((cnt > 0).sum())
            usage.append({"codebook": i, "distinct": distinct, "size": size,
                          "usage": distinct / max(size, 1), "perplexity": math.exp(ent)})
        out = {"scanned_samples": scanned, "scanned_frames": frames, "usage": usage,
               "codebook_size_known": bool(card), "unreadable": errors}
        if info.get("frames") is None:
            out["frames"] = frames
            out["frames_exact"] = scanned >= int(info.get("samples") or 0)
            out["frames_source"] = "scan"
        else:
            out["frames_exact"] = True
            out["frames_source"] = info.get("frames_source", "manifest")
        if n_cb:
            out["n_codebooks"] = int(n_cb)
        if card:
            out["codebook_size"] = int(card)
        if frame_rate:
            out["frame_rate"] = float(frame_rate)
        return out
