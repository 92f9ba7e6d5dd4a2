"""Licences: hours per licence and source (``matalu manifests licenses URI``), and a reusable licence filter.

:func:`license_filter` builds the predicate behind ``--exclude-license`` (ingestion drops recordings before they
become work units, encode drops samples): patterns are matched case-insensitively against the row's licence
string, ``*``/``?`` globs work (``CC-BY-NC*`` excludes every non-commercial variant), and ``(none)`` / ``none`` match
rows without a licence.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from manifests.overview import NO_LICENSE, ManifestDB
from manifests.rows import Reject

_EMPTY_NAMES = {"(none)", "none"}


def _norm(s: str | None) -> str:
    return (s or "").strip().lower()


@dataclass
class LicenseFilter:
    """Keep rows whose licence matches none of ``excluded``. Call it on a row (``.license``), a dict
    (``["license"]``) or a licence string: ``True`` means keep."""

    excluded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # "--exclude-license A,B" works as well as repeating the flag; blank patterns are ignored (write
        # "none" to drop rows without a licence)
        parts = [part.strip() for p in self.excluded for part in str(p).split(",") if part.strip()]
        self._original = {_norm(p): p for p in reversed(parts)}
        self._patterns = list(dict.fromkeys(_norm(p) for p in parts))
        self._empty = any(p in _EMPTY_NAMES for p in self._patterns)
        self._globs = [p for p in self._patterns if p not in _EMPTY_NAMES]
        self.excluded = [str(p) for p in self.excluded if str(p).strip()]

    def __bool__(self) -> bool:  # an empty filter excludes nothing
        return bool(self._globs or self._empty)

    @staticmethod
    def license_of(item: Any) -> str:
        if item is None or isinstance(item, str):
            return item or ""
        if isinstance(item, dict):
            return item.get("license") or ""
        return getattr(item, "license", "") or ""

    def excludes(self, license: str | None) -> bool:
        lic = _norm(license)
        if not lic:
            return self._empty
        return any(fnmatch.fnmatchcase(lic, g) for g in self._globs)

    def matched_pattern(self, license: str | None) -> str | None:
        lic = _norm(license)
        if not lic:
            return next((self._original[p] for p in self._patterns if p in _EMPTY_NAMES), None)
        g = next((g for g in self._globs if fnmatch.fnmatchcase(lic, g)), None)
        return None if g is None else self._original.get(g, g)

    def __call__(self, item: Any) -> bool:
        return not self.excludes(self.license_of(item))

    def split(self, items: Iterable[Any]) -> tuple[list, list]:
        """(kept, dropped) in input order."""
        kept, dropped = [], []
        for it in items:
            (kept if self(it) else dropped).append(it)
        return kept, dropped

    def reject(self, rec: Any, stage: str = "license") -> Reject:
        """A Reject row for a recording (or sample) this filter drops: reason ``license_excluded``."""
        lic = self.license_of(rec)
        item = getattr(rec, "recording_id", None) or getattr(rec, "sample_id", None) or (
            rec.get("recording_id") or rec.get("sample_id") if isinstance(rec, dict) else "")
        get = (lambda k: rec.get(k)) if isinstance(rec, dict) else (lambda k: getattr(rec, k, None))
        return Reject(item=str(item or ""), stage=stage, reason="license_excluded",
                      detail=f"license {lic or NO_LICENSE!r} matches --exclude-license {self.matched_pattern(lic)!r}",
                      source=get("source") or "", recording_id=get("recording_id") or "",
                      seconds=get("duration_s"))

    def mask(self, table: pa.Table, column: str = "license") -> pa.Array:
        """Boolean keep-mask over a pyarrow table's licence column (vectorised over distinct values)."""
        col = table.column(column) if column in table.column_names else pa.nulls(table.num_rows, pa.string())
        col = pc.fill_null(col.cast(pa.string()), "")
        uniq = pc.unique(col).to_pylist()
        keep = [u for u in uniq if self(u)]
        return pc.is_in(col, value_set=pa.array(keep, pa.string()))

    def filter_table(self, table: pa.Table, column: str = "license") -> pa.Table:
        if not self:
            return table
        return table.filter(self.mask(table, column))


def license_filter(excluded: Iterable[str] | None) -> LicenseFilter:
    """The predicate behind ``--exclude-license``: ``license_filter(["CC-BY-NC*", "none"])(row) -> keep?``."""
    return LicenseFilter(list(excluded or []))


# -- the table ----------------------------------------------------------------------------------------------
def license_report(uri: str, db: ManifestDB | None = None) -> dict:
    """Samples and hours per licence, per licence × source, and in total (from ``samples``)."""
    own = db is None
    db = db or ManifestDB(uri, materialize="never")
    try:
        rows = db.query(f"SELECT coalesce(nullif(license, ''), '{NO_LICENSE}') AS license, source, count(*) AS samples, "
                        "coalesce(sum(duration_s), 0) AS seconds FROM samples GROUP BY 1, 2 ORDER BY 1, 2")
        tot = db.query("SELECT count(*) AS samples, coalesce(sum(duration_s), 0) AS seconds FROM samples")[0]
        rec = db.query(f"SELECT coalesce(nullif(license, ''), '{NO_LICENSE}') AS license, count(*) AS recordings, "
                       "coalesce(sum(duration_s), 0) AS seconds FROM recordings GROUP BY 1 ORDER BY 1")
    finally:
        if own:
            db.close()
    by_lic: dict[str, dict] = {}
    for r in rows:
        r["hours"] = r.pop("seconds") / 3600
        d = by_lic.setdefault(r["license"], {"license": r["license"], "samples": 0, "hours": 0.0, "sources": []})
        d["samples"] += r["samples"]
        d["hours"] += r["hours"]
        d["sources"].append(r["source"])
    rec_by = {r["license"]: r for r in rec}
    for lic, d in by_lic.items():
        d["share"] = d["hours"] / (tot["seconds"] / 3600) if tot["seconds"] else 0.0
        if lic in rec_by:
            d["input_recordings"] = rec_by[lic]["recordings"]
            d["input_hours"] = rec_by[lic]["seconds"] / 3600
    return {
        "uri": uri,
        "total": {"samples": tot["samples"], "hours": tot["seconds"] / 3600},
        "by_license": sorted(by_lic.values(), key=lambda d: (-d["hours"], d["license"])),
        "by_license_source": sorted(rows, key=lambda r: (-r["hours"], r["license"], r["source"] or "")),
    }


def render(rep: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="hours by license", title_justify="left")
    for c, j in (("license", "left"), ("samples", "right"), ("hours", "right"), ("share", "right"),
                 ("input h", "right"), ("sources", "left")):
        t.add_column(c, justify=j)
    for d in rep["by_license"]:
        inp = d.get("input_hours")
        t.add_row(d["license"], str(d["samples"]), f"{d['hours']:.3f}", f"{100 * d['share']:.1f}%",
                  "" if inp is None else f"{inp:.3f}", ", ".join(d["sources"]))
    t.add_section()
    t.add_row("total", str(rep["total"]["samples"]), f"{rep['total']['hours']:.3f}", "100.0%", "", "")
    console.print(t)
    t = Table(title="hours by license and source", title_justify="left")
    for c, j in (("license", "left"), ("source", "left"), ("samples", "right"), ("hours", "right")):
        t.add_column(c, justify=j)
    for r in rep["by_license_source"]:
        t.add_row(r["license"], r["source"] or "", str(r["samples"]), f"{r['hours']:.3f}")
    console.print(t)
