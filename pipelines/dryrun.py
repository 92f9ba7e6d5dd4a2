"""``matalu ingest --dry-run-filters``: what filter thresholds would remove from a finished run (docs/DESIGN.md §7).

It reads the run's stored scores (``manifests/samples.parquet``) and applies the checks a unit applies to a new
segment (``quality.check``, then ``measures.check``), so a preview and a real run decide alike; nothing is decoded,
re-measured or written. The run's samples already passed the run's own filters, so thresholds looser than those
cannot bring back what the run rejected: that is listed apart (``already_rejected``, from ``rejects.parquet``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import storage
from manifests.io import manifest_uri, read_table
from manifests.rows import Reject, Sample
from pipelines.config import IngestConfig
from pipelines.stages import measures as M
from pipelines.stages import quality as Q

# the stored column each filter threshold reads
SCORE_OF = {"min_duration_s": "duration_s", "max_duration_s": "duration_s", "min_speech_ratio": "speech_ratio",
            "max_clipping": "clipping", "min_snr_db": "snr_db", "min_dnsmos_ovrl": "dnsmos_ovrl",
            "min_bandwidth_hz": "bandwidth_hz", "min_lufs": "loudness_lufs", "max_lufs": "loudness_lufs"}
_COLUMNS = ["sample_id", "kind", "duration_s", *sorted(set(SCORE_OF.values()) - {"duration_s"})]


@dataclass
class DryRun:
    run: str
    filters: dict  # the thresholds applied
    n_samples: int
    hours: float
    removed: list[dict]  # {"reason", "samples", "hours", "share", "example"}, most hours first
    kept_samples: int
    kept_hours: float
    unmeasured: list[dict]  # {"filter", "score", "samples"}: samples without the score a set threshold reads
    already_rejected: list[dict]  # the run's own filter rejects: {"reason", "count", "hours"}

    def to_dict(self) -> dict:
        return asdict(self)


def verdict(row: dict, cfg: IngestConfig) -> tuple[str, str] | None:
    """What a unit would decide for this stored sample row under ``cfg``'s filters: (reason, detail) or None."""
    q = (row.get("snr_db"), row.get("speech_ratio"), row.get("clipping"))
    if None not in q:
        max_d = cfg.segment.dialog_max_s if row.get("kind") == "dialog" else None
        bad = Q.check(row["duration_s"], Q.Quality(*q), cfg.filters, max_duration_s=max_d)
        if bad:
            return bad
    return M.check(row, cfg.filters)


def preview(run: str, cfg: IngestConfig) -> DryRun:
    uri = manifest_uri(run, "samples")
    if not storage.exists(uri):
        raise FileNotFoundError(f"no samples manifest at {uri}: --dry-run-filters needs a finished ingest run "
                                "(give its output directory)")
    rows = read_table(uri, Sample).select(_COLUMNS).to_pylist()
    removed: dict[str, dict] = {}
    kept_n, kept_s, total_s = 0, 0.0, 0.0
    for r in rows:
        d = r["duration_s"] or 0.0
        total_s += d
        bad = verdict(r, cfg)
        if bad is None:
            kept_n += 1
            kept_s += d
            continue
        g = removed.setdefault(bad[0], {"reason": bad[0], "samples": 0, "seconds": 0.0, "example": r["sample_id"] + ": " + bad[1]})
        g["samples"] += 1
        g["seconds"] += d
    groups = []
    for g in sorted(removed.values(), key=lambda g: (-g["seconds"], g["reason"])):
        groups.append({"reason": g["reason"], "samples": g["samples"], "hours": g["seconds"] / 3600,
                       "share": g["seconds"] / total_s if total_s else 0.0, "example": g["example"]})
    unmeasured = []
    for key, col in SCORE_OF.items():
        if getattr(cfg.filters, key) is None:
            continue
        n = sum(r[col] is None for r in rows)
        if n:
            unmeasured.append({"filter": key, "score": col, "samples": n})
    return DryRun(run=run, filters=dataclasses.asdict(cfg.filters), n_samples=len(rows), hours=total_s / 3600,
                  removed=groups, kept_samples=kept_n, kept_hours=kept_s / 3600, unmeasured=unmeasured,
                  already_rejected=_run_rejects(run))


def _run_rejects(run: str) -> list[dict]:
    uri = manifest_uri(run, "rejects")
    if not storage.exists(uri):
        return []
    by: dict[str, list] = {}
    for r in read_table(uri, Reject).select(["stage", "reason", "seconds"]).to_pylist():
        if r["stage"] == "filters":
            g = by.setdefault(r["reason"], [0, 0.0])
            g[0] += 1
            g[1] += r["seconds"] or 0.0
    return [{"reason": k, "count": n, "hours": s / 3600} for k, (n, s) in sorted(by.items(), key=lambda kv: -kv[1][1])]


def render(d: DryRun, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]dry run[/] of the filters on {d.run}: {d.n_samples} samples, {d.hours:.3f} h "
                  "(stored scores; nothing is decoded or written)")
    if d.removed:
        t = Table(title="would remove", title_justify="left")
        for c in ("reason", "samples", "hours", "% of hours", "example"):
            t.add_column(c, justify="left" if c in ("reason", "example") else "right")
        for g in d.removed:
            t.add_row(g["reason"], str(g["samples"]), f"{g['hours']:.3f}", f"{100 * g['share']:.1f}", g["example"])
        console.print(t)
    else:
        console.print("would remove nothing")
    share = d.kept_hours / d.hours if d.hours else 1.0
    console.print(f"would keep [bold]{d.kept_samples}[/] samples, [bold]{d.kept_hours:.3f}[/] h ({100 * share:.1f}% of the hours)")
    for u in d.unmeasured:
        console.print(f"[yellow]{u['samples']} samples have no {u['score']}[/]: filters.{u['filter']} cannot judge them "
                      "(kept here); ingest again with that measure on to score them")
    if d.already_rejected:
        rej = ", ".join(f"{g['reason']} {g['count']} ({g['hours']:.3f} h)" for g in d.already_rejected)
        console.print(f"the run's own filters already rejected: {rej}; looser thresholds cannot bring those back "
                      "without a new run")
