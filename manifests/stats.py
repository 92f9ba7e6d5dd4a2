"""``matalu manifests stats``: a run's totals, hours by source, kind, speaker and licence, shards, rejects by reason
(count, hours and share of the input hours: what each filter removed).

The numbers are :meth:`manifests.overview.ManifestDB.summary`'s, the same the web page (``/api/summary``) and the
static report show: one implementation of each figure. A sample counts once for each of its speakers (a dialog
is credited to both), so speaker hours can sum to more than the total; samples without speakers count under
``(unknown)``, samples without a licence under ``(none)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from manifests.overview import TOP_SPEAKERS, ManifestDB


@dataclass
class Stats:
    n_samples: int
    hours: float
    n_speakers: int
    by_source: list[dict]  # {"source", "samples", "hours"}, most hours first
    by_kind: list[dict]
    by_speaker: list[dict]  # the top speakers
    by_license: list[dict]
    n_shards: int  # segment shards (token shards are the encode job's)
    shard_bytes: int
    # {"stage", "reason", "count", "seconds", "hours", "share", "example"}, most first; share: of the recordings'
    # decoded hours (what each filter, stage "filters", removed is the rows of that stage)
    rejects: list[dict]
    n_rejects: int

    def to_dict(self) -> dict:
        return asdict(self)


def compute(uri: str, top_speakers: int = TOP_SPEAKERS, db: ManifestDB | None = None) -> Stats:
    """Stats of the run at ``uri`` (a run directory or ``s3://`` prefix, its manifests/ folder or a samples.parquet)."""
    own = db is None
    db = db or ManifestDB(uri, materialize="never")
    try:
        s = db.summary(top_speakers)
        rejects = [{"stage": g["stage"], "reason": g["reason"], "count": g["count"], "seconds": g["seconds"],
                    "hours": g["hours"], "share": g["share"],
                    "example": g["examples"][0]["item"] if g["examples"] else ""} for g in db.reject_summary(examples=1)]
        return Stats(n_samples=int(s["n_samples"]), hours=float(s["hours"]), n_speakers=int(s["n_speakers"]),
                     by_source=s["by_source"], by_kind=s["by_kind"], by_speaker=s["by_speaker"],
                     by_license=s["by_license"], n_shards=int(s["n_shards"]), shard_bytes=int(s["shard_bytes"]),
                     rejects=rejects, n_rejects=int(s["n_rejects"]))
    finally:
        if own:
            db.close()


def render(st: Stats, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def table(title: str, rows: list[dict], key: str) -> Table:
        t = Table(title=title, title_justify="left")
        t.add_column(key)
        t.add_column("samples", justify="right")
        t.add_column("hours", justify="right")
        for r in rows:
            t.add_row(str(r[key]) if r[key] not in ("", None) else "(empty)", str(r["samples"]), f"{r['hours']:.3f}")
        return t

    console.print(f"[bold]{st.n_samples}[/] samples, [bold]{st.hours:.3f}[/] h, [bold]{st.n_speakers}[/] speakers "
                  f"in [bold]{st.n_shards}[/] shards ({st.shard_bytes / 1e6:.1f} MB); [bold]{st.n_rejects}[/] rejects")
    console.print(table("hours by source", st.by_source, "source"))
    console.print(table("hours by kind", st.by_kind, "kind"))
    console.print(table(f"hours by speaker (top {len(st.by_speaker)}; a dialog counts for each of its speakers)",
                        st.by_speaker, "speaker"))
    console.print(table("hours by license", st.by_license, "license"))
    if st.n_rejects:
        t = Table(title="rejects by reason (stage filters: what each filter removed)", title_justify="left")
        for c in ("stage", "reason", "count", "hours", "% of input", "example"):
            t.add_column(c, justify="right" if c in ("count", "hours", "% of input") else "left")
        for r in st.rejects:
            share = "" if r["share"] is None else f"{100 * r['share']:.2f}"
            t.add_row(r["stage"], r["reason"], str(r["count"]), f"{r['hours']:.4f}", share, r["example"])
        console.print(t)
