"""The ingestion job: sources -> work units -> Ray Data actors -> segment shards -> manifests, committed last.

Run it with ``matalu ingest`` (local Ray by default) or ``matalu submit ingest`` (Ray Jobs API).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

import storage
from jobs.cluster import init_ray as _init_ray
from jobs.runner import JobResult, new_run_id, run_unit, versions
from manifests.io import MANIFEST_DIR, SUCCESS, append_run, concat_tables, manifest_uri, read_table, table_bytes, to_table
from manifests.rows import Diarization, Recording, Reject, Run, Sample, Shard
from pipelines import sources as source_registry
from pipelines.config import IngestConfig, config_from_dict
from pipelines.empty import require_recordings
from pipelines.unit import UnitProcessor, WorkUnit, make_units, parts_uri, unit_done

log = logging.getLogger("matalu.ingest")
TABLES = (("recordings", Recording), ("samples", Sample), ("rejects", Reject), ("shards", Shard),
          ("diarization", Diarization))


@dataclass
class IngestResult(JobResult):
    """The ingest job's :class:`jobs.runner.JobResult` (``out`` = the run's output URI)."""


# -- sources --------------------------------------------------------------------------------------------------
def prepare_sources(cfg: IngestConfig, say: Callable[[str], None] = print) -> tuple[list[Recording], list[Reject]]:
    from manifests.licenses import license_filter

    keep = license_filter(cfg.exclude_licenses)
    recordings: list[Recording] = []
    rejects: list[Reject] = []
    for spec in cfg.sources:
        mod = source_registry.get(spec.name)
        target = Path(cfg.sources_dir) / spec.name
        say(f"[source] {spec.name}: download/prepare into {target}")
        downloaded = mod.download(target, **spec.options)
        seen: set[str] = set()
        n = 0
        for row in mod.prepare(downloaded, **spec.options):
            if isinstance(row, Reject):
                rejects.append(row)
                continue
            if row.recording_id in seen:
                rejects.append(Reject(item=row.recording_id, stage="prepare", reason="duplicate_id",
                                      detail=f"recording id {row.recording_id!r} appears twice in {spec.name}",
                                      source=row.source, recording_id=row.recording_id))
                continue
            if not keep(row):
                rejects.append(keep.reject(row))
                continue
            seen.add(row.recording_id)
            recordings.append(row)
            n += 1
        mine = [r for r in rejects if r.source == mod.NAME]
        say(f"[source] {spec.name}: {n} recordings, {len(mine)} rejected while preparing")
        require_recordings(spec.name, n, mine, cfg.allow_empty)
    return recordings, rejects


# -- Ray ------------------------------------------------------------------------------------------------------
def init_ray(cfg: IngestConfig) -> None:
    _init_ray(cfg.address, cfg.num_cpus)


class RayUnitWorker:
    """Ray Data actor: holds a UnitProcessor (and so the VAD model) for its lifetime."""

    def __init__(self, cfg_json: str, run_id: str) -> None:
        self.proc = UnitProcessor(config_from_dict(json.loads(cfg_json)), run_id)

    def __call__(self, batch: dict) -> dict:
        units = [WorkUnit.from_json(str(s)) for s in batch["unit"]]
        out = [run_unit(u.unit_id, lambda u=u: self.proc.process(u)) for u in units]
        return {"summary": np.array(out, dtype=object)}


def _run_units(cfg: IngestConfig, todo: list[WorkUnit], run_id: str, on_done: Callable[[dict], None]) -> None:
    import ray
    import ray.data

    init_ray(cfg)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_progress = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n = max(1, min(cfg.num_workers or cpus, len(todo)))
    ds = ray.data.from_items([{"unit": u.to_json()} for u in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(
        RayUnitWorker,
        fn_constructor_kwargs={"cfg_json": cfg.to_json(), "run_id": run_id},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n),
        num_cpus=1,
    )
    for row in ds.iter_rows():
        on_done(json.loads(row["summary"]))


# -- manifests ------------------------------------------------------------------------------------------------
def _units_fingerprint(units: list[WorkUnit], prep_rejects: list[Reject]) -> str:
    import hashlib

    h = hashlib.sha256()
    for u in units:
        h.update(f"{u.unit_id}:{u.fingerprint}\n".encode())
    for r in prep_rejects:
        h.update(json.dumps(r.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


def merge_manifests(out: str, units: list[WorkUnit], prep_rejects: list[Reject]) -> dict:
    """Concatenate the committed parts of ``units`` into ``<out>/manifests/<table>.parquet``."""
    counts = {}
    for name, cls in TABLES:
        tables = [read_table(storage.join(parts_uri(out, u.unit_id), f"{name}.parquet"), cls) for u in units]
        if name == "rejects" and prep_rejects:
            tables.insert(0, to_table(prep_rejects, Reject))
        t = concat_tables(tables, cls)
        storage.write_bytes(manifest_uri(out, name), table_bytes(t))
        counts[name] = t.num_rows
        if name == "diarization" and t.num_rows:
            scored = [(d, s) for d, s in zip(t.column("der").to_pylist(), t.column("seconds").to_pylist()) if d is not None]
            if scored:  # time-weighted, as DER is
                counts["der_collar0"] = round(sum(d * s for d, s in scored) / sum(s for _, s in scored), 5)
            counts["diarized_into_dialogs"] = sum(bool(x) for x in t.column("used_for_turns").to_pylist())
    return counts


def reconcile(out: str, recordings: list[Recording]) -> list[str]:
    """Recording ids that are in neither samples nor rejects (should always be empty)."""
    s = read_table(manifest_uri(out, "samples"), Sample).column("recording_id").to_pylist()
    r = read_table(manifest_uri(out, "rejects"), Reject).column("recording_id").to_pylist()
    seen = set(s) | set(r)
    return sorted(rec.recording_id for rec in recordings if rec.recording_id not in seen)


# -- the job --------------------------------------------------------------------------------------------------
def run_ingest(cfg: IngestConfig, *, command: str = "matalu ingest", say: Callable[[str], None] = print,
               progress: bool = True) -> IngestResult:
    cfg.validate()
    storage.configure(cfg.storage)
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    recordings, prep_rejects = prepare_sources(cfg, say)
    units = make_units(recordings, cfg.unit_size, cfg.processing_fingerprint())
    fp = _units_fingerprint(units, prep_rejects)
    success_uri = storage.join(cfg.out, SUCCESS)
    existing = set(storage.list_files(storage.join(cfg.out, "segments"), ".tar"))
    todo = [u for u in units if not unit_done(cfg.out, u, existing)]
    if storage.exists(success_uri) and not todo:
        try:
            prev = json.loads(storage.read_text(success_uri))
        except ValueError:
            prev = {}
        if prev.get("units_fingerprint") == fp:
            say(f"[ingest] {cfg.out} is already committed for these inputs and settings: nothing to do")
            return IngestResult(cfg.out, prev.get("run_id", ""), len(units), len(units), 0,
                                counts=prev.get("counts", {}), committed=True, noop=True)
    if storage.exists(success_uri):
        storage.remove(success_uri)  # the output is about to change: it is not committed until we finish
    skipped = len(units) - len(todo)
    say(f"[ingest] run {run_id}: {len(recordings)} recordings in {len(units)} units; "
        f"{skipped} already committed, {len(todo)} to process -> {cfg.out}")
    failed: list[str] = []
    totals = {"seconds_in": 0.0, "mono": 0, "dialog": 0, "rejects": 0, "elapsed_s": 0.0}
    if todo:
        t0 = time.perf_counter()
        bar = _progress(len(todo), enabled=progress)

        def on_done(summary: dict) -> None:
            if "error" in summary:
                failed.append(summary["unit_id"])
                say(f"[ingest] unit {summary['unit_id']} failed: {summary['error']}\n{summary.get('traceback', '')}")
            else:
                for k in totals:
                    totals[k] += summary[k]
            bar.advance(summary, totals, time.perf_counter() - t0)

        with bar:
            _run_units(cfg, todo, run_id, on_done)
        wall = time.perf_counter() - t0
        say(f"[ingest] processed {totals['seconds_in'] / 3600:.3f} h of audio in {wall:.1f} s wall "
            f"(cluster start included); unit work {totals['elapsed_s']:.1f} s of actor time = "
            f"{totals['seconds_in'] / max(totals['elapsed_s'], 1e-9):.0f}x realtime per actor")
    done_units = [u for u in units if u.unit_id not in failed]
    counts = merge_manifests(cfg.out, done_units, prep_rejects)
    missing = reconcile(cfg.out, [r for u in done_units for r in u.recordings])
    counts["unaccounted_recordings"] = len(missing)
    if "der_collar0" in counts:
        say(f"[ingest] diarization check on recordings with true turns: DER {100 * counts['der_collar0']:.2f}% "
            "(collar 0, overlap scored; per recording in manifests/diarization.parquet)")
    counts["failed_units"] = len(failed)
    ended = datetime.now(timezone.utc)
    append_run(cfg.out, Run(run_id=run_id, command=command, config=cfg.to_json(), versions=json.dumps(versions()),
                             started=started.isoformat(), ended=ended.isoformat(), counts=json.dumps(counts)))
    storage.write_text(storage.join(cfg.out, MANIFEST_DIR, f"config-{run_id}.json"),
                       json.dumps(cfg.to_dict(), indent=2, ensure_ascii=False) + "\n")
    committed = not failed and not missing
    if committed:
        storage.write_text(success_uri, json.dumps({"run_id": run_id, "units_fingerprint": fp, "counts": counts}) + "\n")
    else:
        say(f"[ingest] NOT committed: {len(failed)} failed units, {len(missing)} unaccounted recordings; "
            "rerun the same command to retry the failed units")
    return IngestResult(cfg.out, run_id, len(units), skipped, len(todo) - len(failed), failed, counts, committed)


class _progress:
    """A rich progress bar over units (quiet when disabled or not on a terminal)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total, self.enabled, self._p = total, enabled, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("[bold]units"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                               TimeElapsedColumn(), TimeRemainingColumn())
            self._p.__enter__()
            self._task = self._p.add_task("", total=self.total)
        return self

    def advance(self, summary: dict, totals: dict, elapsed: float) -> None:
        if self._p is not None:
            h = totals["seconds_in"] / 3600
            self._p.update(self._task, advance=1, description=(
                f"{h:.2f} h in, {totals['mono']} mono, {totals['dialog']} dialog, {totals['rejects']} rejects, "
                f"{totals['seconds_in'] / max(elapsed, 1e-9):.0f}x rt"))

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
