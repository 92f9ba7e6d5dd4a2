"""Summaries of a run's manifests: hours by source, kind, speaker and license; shards; rejects by reason."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

import storage
from manifests.io import read_table, resolve_table_uri
from manifests.rows import Reject, Sample, Shard


@dataclass
class Stats:
    n_samples: int
    hours: float
    by_source: pd.DataFrame
    by_kind: pd.DataFrame
    by_speaker: pd.DataFrame
    by_license: pd.DataFrame
    n_shards: int
    shard_bytes: int
    rejects: pd.DataFrame
    n_rejects: int

    def to_dict(self) -> dict:
        def recs(df: pd.DataFrame) -> list[dict]:
            return df.reset_index().to_dict(orient="records")

        return {"n_samples": self.n_samples, "hours": self.hours, "n_shards": self.n_shards,
                "shard_bytes": self.shard_bytes, "n_rejects": self.n_rejects,
                "by_source": recs(self.by_source), "by_kind": recs(self.by_kind), "by_speaker": recs(self.by_speaker),
                "by_license": recs(self.by_license), "rejects": recs(self.rejects)}


def _hours(df: pd.DataFrame, col: str) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame({"samples": [], "hours": []})
    g = df.groupby(col, dropna=False).agg(samples=("sample_id", "count"), hours=("duration_s", "sum"))
    g["hours"] = g["hours"] / 3600
    return g.sort_values("hours", ascending=False)


def compute(uri: str, top_speakers: int = 20) -> Stats:
    samples = read_table(resolve_table_uri(uri, "samples"), Sample).to_pandas()
    shards_uri = resolve_table_uri(uri, "shards")
    shards = read_table(shards_uri, Shard).to_pandas() if storage.exists(shards_uri) else pd.DataFrame(columns=["bytes"])
    rej_uri = resolve_table_uri(uri, "rejects")
    rejects = read_table(rej_uri, Reject).to_pandas() if storage.exists(rej_uri) else pd.DataFrame(columns=["reason", "stage", "item"])
    if not samples.empty:
        samples = samples.assign(speaker=samples["speakers"].map(lambda s: ", ".join(s) if s is not None and len(s) else "(unknown)"),
                                 license=samples["license"].replace("", "(none)"))
    rej = (rejects.groupby(["stage", "reason"]).agg(count=("item", "count"), example=("item", "first"))
           .sort_values("count", ascending=False) if not rejects.empty else pd.DataFrame({"count": []}))
    return Stats(
        n_samples=len(samples),
        hours=float(samples["duration_s"].sum() / 3600) if not samples.empty else 0.0,
        by_source=_hours(samples, "source"),
        by_kind=_hours(samples, "kind"),
        by_speaker=_hours(samples, "speaker").head(top_speakers),
        by_license=_hours(samples, "license"),
        n_shards=len(shards),
        shard_bytes=int(shards["bytes"].sum()) if len(shards) else 0,
        rejects=rej,
        n_rejects=len(rejects),
    )


def render(st: Stats, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def table(title: str, df: pd.DataFrame, key: str) -> Table:
        t = Table(title=title, title_justify="left")
        t.add_column(key)
        for c in df.columns:
            t.add_column(c, justify="right" if c != "example" else "left")
        for idx, *vals in df.itertuples(index=True, name=None):
            label = " / ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
            t.add_row(label, *[f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals])
        return t

    console.print(f"[bold]{st.n_samples}[/] samples, [bold]{st.hours:.3f}[/] h in [bold]{st.n_shards}[/] shards "
                  f"({st.shard_bytes / 1e6:.1f} MB); [bold]{st.n_rejects}[/] rejects")
    console.print(table("hours by source", st.by_source, "source"))
    console.print(table("hours by kind", st.by_kind, "kind"))
    console.print(table("hours by speaker (top)", st.by_speaker, "speaker"))
    console.print(table("hours by license", st.by_license, "license"))
    if st.n_rejects:
        console.print(table("rejects by reason", st.rejects, "stage / reason"))
