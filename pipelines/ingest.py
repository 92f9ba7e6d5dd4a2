"""The ingestion job: sources -> work units -> Ray Data actors -> segment shards -> manifests, committed last.

Run it with ``matalu ingest`` (local Ray by default) or ``matalu submit ingest`` (Ray Jobs API).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import storage
from jobs.runner import JobResult, JobSpec, new_run_id, run_job
from manifests.io import manifest_uri, read_rows, read_table
from manifests.rows import Diarization, Recording, Reject, Sample, Shard
from pipelines import sources as source_registry
from pipelines.config import IngestConfig, config_from_dict
from pipelines.empty import empty_output_message, require_recordings
from pipelines.stages.dedup import dedup_run
from pipelines.unit import UnitProcessor, WorkUnit, make_units

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
        if getattr(mod, "USES_RAY", False):  # the recipe spreads its work (synthesis) over the job's Ray
            from jobs.cluster import init_ray

            mod.check_options(**spec.options)  # a bad option fails here, before Ray starts

            init_ray(cfg.address, cfg.num_cpus)
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
def make_processor(cfg_json: str, run_id: str) -> UnitProcessor:
    """The ingest job's unit processor on a Ray actor (holds the VAD model for the actor's lifetime)."""
    return UnitProcessor(config_from_dict(json.loads(cfg_json)), run_id)


# -- manifests ------------------------------------------------------------------------------------------------
def diarization_counts(out: str) -> dict:
    """The merged diarization table's summary: time-weighted DER over recordings with true turns, and how many
    recordings were diarized into dialogs."""
    t = read_table(manifest_uri(out, "diarization"), Diarization)
    counts: dict = {}
    if t.num_rows:
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
    say(f"[ingest] {len(recordings)} recordings in {len(units)} units")
    segments = storage.join(cfg.out, "segments")

    def after_merge(counts: dict, done: list[WorkUnit]) -> list[str]:
        dups = dedup_run(cfg.out, [u.unit_id for u in done], cfg.filters.dedup)  # across units: after the merge
        if dups:
            counts["samples"] -= dups
            counts["rejects"] += dups
            say(f"[ingest] {dups} duplicate samples (first occurrence kept) moved to rejects")
        counts["duplicates"] = dups
        counts.update(diarization_counts(cfg.out))
        missing = reconcile(cfg.out, [r for u in done for r in u.recordings])
        counts["unaccounted_recordings"] = len(missing)
        if "der_collar0" in counts:
            say(f"[ingest] diarization check on recordings with true turns: DER {100 * counts['der_collar0']:.2f}% "
                "(collar 0, overlap scored; per recording in manifests/diarization.parquet)")
        problems = [f"{len(missing)} unaccounted recordings"] if missing else []
        if not counts.get("samples") and len(done) == len(units):  # zero samples: refused unless --allow-empty
            empty = empty_output_message(0, sum(len(u.recordings) for u in done),
                                         read_rows(manifest_uri(cfg.out, "rejects"), Reject), cfg.allow_empty)
            problems += [empty] if empty else []
        return problems

    spec = JobSpec(
        name="ingest", root=cfg.out, units=units, unit_type=WorkUnit,
        make_processor=functools.partial(make_processor, cfg.to_json(), run_id),
        tables=TABLES, config=cfg.to_dict(), run_id=run_id, command=command, started=started,
        address=cfg.address, num_cpus=cfg.num_cpus, num_workers=cfg.num_workers, use_gpu=False,
        shard_prefix=segments, lead_rows={"rejects": (prep_rejects, Reject)} if prep_rejects else {},
        fingerprint_extra=[json.dumps(r.to_dict(), sort_keys=True) for r in prep_rejects],
        totals=("seconds_in", "mono", "dialog", "rejects", "elapsed_s"),
        progress_line=lambda t, el: (f"{t['seconds_in'] / 3600:.2f} h in, {t['mono']} mono, {t['dialog']} dialog, "
                                     f"{t['rejects']} rejects, {t['seconds_in'] / max(el, 1e-9):.0f}x rt"),
        end_line=lambda t, wall: (f"[ingest] processed {t['seconds_in'] / 3600:.3f} h of audio in {wall:.1f} s wall "
                                  f"(cluster start included); unit work {t['elapsed_s']:.1f} s of actor time = "
                                  f"{t['seconds_in'] / max(t['elapsed_s'], 1e-9):.0f}x realtime per actor"),
        after_merge=after_merge,
        existing_shards=lambda: set(storage.list_files(segments, ".tar")),
        result_type=IngestResult,
    )
    return run_job(spec, say=say, progress=progress)
