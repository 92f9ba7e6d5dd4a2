"""The one unit job runner: units -> parts -> merged manifests -> ``_SUCCESS`` (docs/DESIGN.md §11).

Every unit-based job (ingest, encode, and the passes to come) is a :class:`JobSpec`: its units (each with an id, a
fingerprint of everything its output depends on, and ``to_json``/``from_json``), a factory for the object that
processes one unit on a Ray actor, and the manifest tables it writes. :func:`run_job` owns the rest:

* **resume**: a unit whose ``<root>/manifests/parts/<unit>/_DONE`` holds its fingerprint, and whose shards still exist,
  is skipped; a run whose ``_SUCCESS`` holds the same job fingerprint (all unit fingerprints) is a no-op;
* **units on Ray**: Ray Data ``map_batches`` over the units with an actor pool of the job's processors (one CPU each,
  or one GPU each when the job uses GPUs); a unit that raises is reported and stays uncommitted. A job whose units
  need several stages (decode on CPUs, encode on GPUs, write on CPUs) gives ``JobSpec.execute`` instead, which runs
  the todo units its own way under the same contract (each unit committed, one summary per unit);
* **commit**: each processor commits its unit with :func:`commit_unit` (parts first, ``_DONE`` last); when every unit
  is done the runner merges the parts into ``<root>/manifests/<table>.parquet``, removes what no manifest lists any
  more (shards and parts of units from an earlier run with another layout or other inputs), appends ``runs.parquet``,
  writes ``config-<run_id>.json`` and finally ``_SUCCESS``. Readers see a run only once ``_SUCCESS`` exists.

It also holds a run's identity (:func:`new_run_id`, :func:`versions`) and what a job returns (:class:`JobResult`)."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import storage
from manifests.io import MANIFEST_DIR, SUCCESS, append_run, concat_tables, manifest_uri, read_table, table_bytes, to_table
from manifests.rows import Run
from storage.errors import StorageError, no_space_message, no_space_path

DONE = "_DONE"
PARTS = "parts"
UNIT_ATTEMPTS = 2  # a unit whose processing raises is tried this often on its actor, then recorded as failed
WORKER_DEATH_RETRIES = 3  # a unit whose actor dies (lost node, out-of-memory kill) is retried by Ray this often


@dataclass
class JobResult:
    """What a unit-based job returns: where it wrote, which run, how many units were skipped (already committed),
    processed or failed, the merged manifests' counts, and whether ``_SUCCESS`` was written (``noop``: the output
    was already committed for these inputs, nothing ran)."""

    out: str
    run_id: str
    units_total: int
    units_skipped: int
    units_processed: int
    units_failed: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    committed: bool = False
    noop: bool = False
    totals: dict = field(default_factory=dict)  # the spec's ``totals`` summed over the units this run processed


def run_unit(unit_id: str, fn: Callable[[], dict], attempts: int = UNIT_ATTEMPTS) -> str:
    """``fn()``'s summary as JSON; a raise is retried up to ``attempts`` tries in all, then becomes an error summary:
    the unit stays uncommitted and a rerun retries it."""
    for attempt in range(1, attempts + 1):
        try:
            return json.dumps({"unit_id": unit_id, **fn()})
        except Exception as e:
            if attempt == attempts:
                return json.dumps({"unit_id": unit_id, "error": f"{type(e).__name__}: {e}",
                                   "attempts": attempts, "traceback": traceback.format_exc()})
            logging.getLogger("matalu.jobs").warning("unit %s failed (%s: %s); trying it again", unit_id,
                                                     type(e).__name__, e)
    raise AssertionError("unreachable")


def new_run_id(started: datetime) -> str:
    return started.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def versions() -> dict:
    """What a run ran with: python, torch, ray, pyarrow, and the matalu git sha (empty outside a checkout)."""
    import pyarrow
    import ray
    import torch

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent,
                             timeout=5).stdout.strip()
    except Exception:
        sha = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
            "pyarrow": pyarrow.__version__, "matalu": sha}


# -- units ----------------------------------------------------------------------------------------------------
def parts_uri(root: str, unit_id: str) -> str:
    """Where one unit's manifest parts and ``_DONE`` marker live."""
    return storage.join(root, MANIFEST_DIR, PARTS, unit_id)


def _read_done(root: str, unit_id: str) -> dict | None:
    try:
        return json.loads(storage.read_text(storage.join(parts_uri(root, unit_id), DONE)))
    except (FileNotFoundError, ValueError):
        return None


def unit_done(root: str, unit_id: str, fingerprint: str, existing: set[str] | None = None) -> bool:
    """True when the unit's ``_DONE`` marker holds ``fingerprint`` and every shard it lists still exists
    (``existing``: the shard URIs found by one listing, to spare a request per shard on S3)."""
    done = _read_done(root, unit_id)
    if done is None or done.get("fingerprint") != fingerprint:
        return False
    shards = done.get("shards", [])
    if existing is None:
        return all(storage.exists(s) for s in shards)
    return all(s in existing for s in shards)


def commit_unit(root: str, unit_id: str, fingerprint: str, run_id: str, tables: dict[str, tuple[list, type]],
                shards: list[str]) -> None:
    """Commit one unit: remove the shards (under ``root``) an earlier commit of this unit listed that this run no longer produced,
    write each table's part (``<name>.parquet``), then the ``_DONE`` marker (fingerprint, run id, shard URIs) last."""
    base = parts_uri(root, unit_id)
    old = _read_done(root, unit_id)
    if old:
        keep, inside = set(shards), root.rstrip("/") + "/"
        for s in old.get("shards", []):
            if s not in keep and s.startswith(inside):  # never outside this output (a copied run lists the original's)
                storage.remove(s)
    for name, (rows, cls) in tables.items():
        storage.write_bytes(storage.join(base, f"{name}.parquet"), table_bytes(to_table(rows, cls)))
    storage.write_text(storage.join(base, DONE),
                       json.dumps({"fingerprint": fingerprint, "run_id": run_id, "shards": list(shards)}) + "\n")


class UnitActor:
    """Ray Data actor: builds the job's unit processor once (so models load once per actor) and runs units."""

    def __init__(self, make_processor: Callable[[], Any], unit_type: type) -> None:
        self.proc = make_processor()
        self.unit_type = unit_type

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        units = [self.unit_type.from_json(str(s)) for s in batch["unit"]]
        out = [run_unit(u.unit_id, lambda u=u: self.proc.process(u)) for u in units]
        return {"summary": np.array(out, dtype=object)}


# -- the job --------------------------------------------------------------------------------------------------
@dataclass
class JobSpec:
    """One unit-based job, as :func:`run_job` runs it.

    ``units`` have ``unit_id``, ``fingerprint``, ``to_json()`` and their type a ``from_json``; ``make_processor`` is a
    picklable factory (a class or ``functools.partial``) of an object whose ``process(unit) -> dict`` does one unit,
    commits it with :func:`commit_unit` and returns a summary whose ``totals`` keys are summed for progress."""

    name: str  # "ingest", "encode": the log prefix
    root: str  # holds manifests/ and _SUCCESS
    units: list
    unit_type: type
    make_processor: Callable[[], Any]
    tables: tuple[tuple[str, type], ...]  # merged manifests, in this order
    config: dict  # the job's settings: runs.parquet and config-<run_id>.json
    run_id: str = ""
    command: str = ""
    started: datetime | None = None
    address: str | None = None
    num_cpus: int | None = None  # CPUs of a local Ray started by this job
    num_workers: int | None = None  # actors (default: one per GPU when using GPUs, else one per CPU)
    use_gpu: bool | None = False  # None: use GPUs when the cluster has them
    shard_prefix: str = ""  # every shard of this job lies under it: files there that no manifest lists are removed
    lead_rows: dict[str, tuple[list, type]] = field(default_factory=dict)  # rows merged before the parts' (prepare rejects)
    optional_parts: tuple[str, ...] = ()  # tables an older version's parts may lack (read as empty)
    fingerprint_extra: list[str] = field(default_factory=list)  # more inputs of the job fingerprint
    success_extra: dict = field(default_factory=dict)  # more keys for _SUCCESS (e.g. codec_id)
    totals: tuple[str, ...] = ()  # summary keys summed for progress and the end line
    progress_line: Callable[[dict, float], str] | None = None  # (totals, elapsed) -> the progress bar's text
    end_line: Callable[[dict, float], str] | None = None  # (totals, wall seconds) -> a line after the units ran
    after_merge: Callable[[dict, list], list[str]] | None = None  # (counts, done units) -> problems blocking commit
    existing_shards: Callable[[], set[str]] | None = None  # one listing of the shards, for unit_done
    result_type: type = None  # a JobResult subclass (default JobResult)
    result_extra: dict = field(default_factory=dict)
    # runs the todo units instead of the default actor-per-unit map (:func:`_run_on_ray`), e.g. a multi-stage
    # Ray Data pipeline: (spec, todo units, on_done) -> None, calling on_done(summary) once per unit, a summary with
    # "unit_id" and "error" for a unit that failed; each unit must be committed with commit_unit before its on_done
    execute: Callable[["JobSpec", list, Callable[[dict], None]], None] | None = None

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for u in self.units:
            h.update(f"{u.unit_id}:{u.fingerprint}\n".encode())
        for x in self.fingerprint_extra:
            h.update(x.encode())
        return h.hexdigest()


def run_job(spec: JobSpec, *, say: Callable[[str], None] = print, progress: bool = True) -> JobResult:
    """Run ``spec``'s units that are not committed yet, merge, and commit (see the module docstring)."""
    result_type = spec.result_type or JobResult
    started = spec.started or datetime.now(timezone.utc)
    run_id = spec.run_id or new_run_id(started)
    tag = f"[{spec.name}]"
    fp = spec.fingerprint()
    success = storage.join(spec.root, SUCCESS)
    existing = spec.existing_shards() if spec.existing_shards else None
    todo = [u for u in spec.units if not unit_done(spec.root, u.unit_id, u.fingerprint, existing)]
    if storage.exists(success) and not todo:
        try:
            prev = json.loads(storage.read_text(success))
        except ValueError:
            prev = {}
        if prev.get("units_fingerprint") == fp:
            say(f"{tag} {spec.root} is already committed for these inputs and settings: nothing to do")
            return result_type(spec.root, prev.get("run_id", ""), len(spec.units), len(spec.units), 0,
                               counts=prev.get("counts", {}), committed=True, noop=True, **spec.result_extra)
    if storage.exists(success):
        storage.remove(success)  # the output is about to change: it is not committed until we finish
    skipped = len(spec.units) - len(todo)
    say(f"{tag} run {run_id}: {len(spec.units)} units; {skipped} already committed, {len(todo)} to process -> {spec.root}")
    failed: dict[str, str] = {}  # unit id -> why
    full_at: list[str] = []  # paths where units found the disk full
    totals = {k: 0 for k in spec.totals}
    if todo:
        t0 = time.perf_counter()
        bar = _Progress(len(todo), spec.progress_line, enabled=progress)

        finished: set[str] = set()

        def on_done(summary: dict) -> None:
            finished.add(summary.get("unit_id", ""))
            if "error" in summary:
                failed[summary["unit_id"]] = summary["error"]
                full = no_space_path(summary["error"])
                if full is not None:  # a full disk: one line, not a traceback per unit
                    full_at.append(full or spec.root)
                    say(f"{tag} unit {summary['unit_id']} failed: no space left on device ({full or spec.root})")
                else:
                    say(f"{tag} unit {summary['unit_id']} failed: {summary['error']}\n{summary.get('traceback', '')}")
            else:
                for k in totals:
                    totals[k] += summary.get(k, 0)
            bar.advance(totals, time.perf_counter() - t0)

        with bar:
            (spec.execute or _run_on_ray)(spec, todo, on_done)
        for u in todo:  # no summary: Ray gave up on it (its actor died on every try)
            if u.unit_id not in finished:
                failed[u.unit_id] = (f"no result after {1 + WORKER_DEATH_RETRIES} tries: its worker died each time "
                                     "(a lost node or an out-of-memory kill)")
                say(f"{tag} unit {u.unit_id} failed: {failed[u.unit_id]}")
        if spec.end_line:
            say(spec.end_line(totals, time.perf_counter() - t0))
    done = [u for u in spec.units if u.unit_id not in failed]
    try:
        counts, committed = _finish(spec, done, failed, run_id, started, fp, tag, say)
    except OSError as e:  # the merge, the run record or _SUCCESS could not be written
        full = no_space_path(e)
        if full is None:
            raise
        raise StorageError(no_space_message(full or spec.root, len(done), len(failed))) from e
    if full_at:
        say(f"{tag} " + no_space_message(full_at[0], len(done), len(failed)))
    return result_type(spec.root, run_id, len(spec.units), skipped, len(todo) - len(failed), sorted(failed), counts,
                       committed, totals=totals, **spec.result_extra)


def _finish(spec: JobSpec, done: list, failed: dict[str, str], run_id: str, started: datetime, fp: str, tag: str,
            say: Callable[[str], None]) -> tuple[dict, bool]:
    """Merge the done units' parts, check, sweep, record the run, and commit when nothing failed."""
    counts = merge_parts(spec, done)
    problems = spec.after_merge(counts, done) if spec.after_merge else []
    counts["failed_units"] = len(failed)
    if not failed and not problems:
        removed = remove_stale(spec)
        if removed:
            say(f"{tag} removed {removed} files no manifest lists (shards and parts of units from an earlier run with "
                "another unit layout or other inputs)")
    ended = datetime.now(timezone.utc)
    append_run(spec.root, Run(run_id=run_id, command=spec.command or f"matalu {spec.name}",
                              config=json.dumps(spec.config, sort_keys=True), versions=json.dumps(versions()),
                              started=started.isoformat(), ended=ended.isoformat(), counts=json.dumps(counts)))
    storage.write_text(storage.join(spec.root, MANIFEST_DIR, f"config-{run_id}.json"),
                       json.dumps(spec.config, indent=2, ensure_ascii=False) + "\n")
    committed = not failed and not problems
    if committed:
        storage.write_text(storage.join(spec.root, SUCCESS), json.dumps({"run_id": run_id, **spec.success_extra, "units_fingerprint": fp,
                                                "counts": counts}) + "\n")
    else:
        why = [f"{len(failed)} failed units"] + problems
        say(f"{tag} NOT committed: {', '.join(why)}; rerun the same command to retry the failed units")
        for unit_id, reason in sorted(failed.items()):
            say(f"{tag}   failed unit {unit_id}: {reason.splitlines()[0] if reason else ''}")
    return counts, committed


def merge_parts(spec: JobSpec, units: list) -> dict:
    """Concatenate the committed parts of ``units`` into ``<root>/manifests/<table>.parquet``; rows per table."""
    counts = {}
    for name, cls in spec.tables:
        parts = [storage.join(parts_uri(spec.root, u.unit_id), f"{name}.parquet") for u in units]
        if name in spec.optional_parts:
            parts = [p for p in parts if storage.exists(p)]
        tables = [read_table(p, cls) for p in parts]
        if name in spec.lead_rows:
            rows, row_cls = spec.lead_rows[name]
            tables.insert(0, to_table(rows, row_cls))
        t = concat_tables(tables, cls)
        storage.write_bytes(manifest_uri(spec.root, name), table_bytes(t))
        counts[name] = t.num_rows
    return counts


def remove_stale(spec: JobSpec) -> int:
    """Remove what the merged manifests no longer list: parts of units not in this job, and shard files under
    ``spec.shard_prefix`` that no ``shards`` row names. Returns how many files were removed."""
    n = 0
    current = {u.unit_id for u in spec.units}
    parts_root = storage.join(spec.root, MANIFEST_DIR, PARTS)
    for f in storage.list_files(parts_root):
        unit_id = f[len(parts_root.rstrip("/")) + 1:].split("/", 1)[0]
        if unit_id not in current:
            storage.remove(f)
            n += 1
    storage.remove_empty_dirs(parts_root)
    if spec.shard_prefix:
        listed = set(read_table(manifest_uri(spec.root, "shards"), None).column("uri").to_pylist())
        for f in storage.list_files(spec.shard_prefix, ".tar"):
            if f not in listed:
                storage.remove(f)
                n += 1
    return n


def start_ray_data(spec: JobSpec, n_units: int) -> tuple[int, int, bool]:
    """Connect to (or start) the job's Ray with Ray Data's progress output off; (cluster CPUs, GPUs, use GPUs).
    Up to ``n_units`` errored blocks are tolerated, so a unit Ray gave up on does not stop the others."""
    import ray
    import ray.data

    from jobs.cluster import init_ray

    init_ray(spec.address, spec.num_cpus)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_progress = False
    ctx.max_errored_blocks = n_units
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # our own progress bar is over units: Ray Data's note that its bars are off is noise on the user's terminal
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    use_gpu = gpus > 0 if spec.use_gpu is None else bool(spec.use_gpu)
    if use_gpu and gpus == 0:
        raise ValueError("--gpu asked for, but the Ray cluster has no GPUs")
    return cpus, gpus, use_gpu


def _run_on_ray(spec: JobSpec, todo: list, on_done: Callable[[dict], None]) -> None:
    """The default execution: Ray Data ``map_batches`` of :class:`UnitActor` (one unit per call) over ``todo``;
    ``on_done`` gets each summary.

    An actor that dies (its node lost, an out-of-memory kill) is restarted and its unit retried by Ray up to
    WORKER_DEATH_RETRIES times; a unit still without a result after that is skipped here (``max_errored_blocks``)
    so the others finish, and :func:`run_job` records it as failed."""
    import ray
    import ray.data

    from jobs.cluster import job_resources

    cpus, gpus, use_gpu = start_ray_data(spec, len(todo))
    n = max(1, min(spec.num_workers or (gpus if use_gpu else cpus), len(todo)))
    ds = ray.data.from_items([{"unit": u.to_json()} for u in todo], override_num_blocks=len(todo))
    with warnings.catch_warnings():  # Ray 2.60 has no named parameter for max_restarts/max_task_retries yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=DeprecationWarning)
        ds = _map_units(ds, spec, n, use_gpu, job_resources())
    for row in ds.iter_rows():
        on_done(json.loads(row["summary"]))


def _map_units(ds, spec: JobSpec, n: int, use_gpu: bool, resources: dict):
    import ray.data

    return ds.map_batches(
        UnitActor,
        fn_constructor_kwargs={"make_processor": spec.make_processor, "unit_type": spec.unit_type},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n),
        num_gpus=1 if use_gpu else 0,
        num_cpus=1,
        resources=resources or None,  # e.g. cpu_node / gpu_node: the node types of cluster.yaml
        max_restarts=-1,  # an actor lost with its node comes back elsewhere ...
        max_task_retries=WORKER_DEATH_RETRIES,  # ... and retries its unit, a bounded number of times
    )


class _Progress:
    """A rich progress bar over units (quiet when disabled)."""

    def __init__(self, total: int, line: Callable[[dict, float], str] | None, enabled: bool = True) -> None:
        self.total, self.line, self.enabled, self._p = total, line, enabled, None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._p = Progress(TextColumn("[bold]units"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                               TimeElapsedColumn(), TimeRemainingColumn())
            self._p.__enter__()
            self._task = self._p.add_task("", total=self.total)
        return self

    def advance(self, totals: dict, elapsed: float) -> None:
        if self._p is not None:
            self._p.update(self._task, advance=1, description=self.line(totals, elapsed) if self.line else "")

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
