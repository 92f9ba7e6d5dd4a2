"""The encode job as a streaming Ray Data pipeline (``JobSpec.execute`` of :func:`pipelines.encode.run_encode`).

Stages, all streaming with Ray Data's backpressure:

1. **decode** (CPU tasks, ``flat_map``): one segment shard (a unit) -> its encode batches. It reads the tar, decodes
   FLAC, applies ``--exclude-license``, and cuts the clips into the same length buckets as the actor-per-unit path
   (:func:`pipelines.encode.encode_batches`, per unit), so every batch holds the same clips with the same padding and
   the codes are byte-identical to that path. Each row is one batch: its padded audio ``[B, 1, L]`` float32 as
   bytes, the clips' lengths, and (first row of a unit only) the unit's header: the kept samples' keys, JSON,
   channels and lengths, and its rejects. A unit with no clips sends one row with an empty batch.
2. **encode** (an actor pool, ``map_batches(batch_size=1)``): ``concurrency`` actors holding the codec, one GPU each
   (with ``actor_cpus`` CPUs), or on a CPU cluster ``actor_cpus`` CPUs each and as many torch threads. They only run
   the model; a batch that raises is sent on as an error row of its unit.
3. **write + commit** (CPU tasks, on the driver's demand): when all batches of a unit are in, a task writes its token
   shard(s) and commits the unit (:func:`pipelines.encode.write_unit`: parts, then ``_DONE``). Each finished unit
   goes to ``on_done``; a unit with an error anywhere is reported failed and stays uncommitted (a rerun redoes it).

Decoding needs ≈ 1 CPU per 2,000–4,000× realtime of encoding, so a GPU actor running at N× realtime needs about
N / 3,000 decode CPUs; Ray Data spreads the decode tasks over every CPU the encoding actors leave free."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Callable

import numpy as np

from jobs.cluster import job_resources
from jobs.runner import JobSpec, start_ray_data
from manifests.licenses import license_filter
from manifests.rows import Reject
from pipelines.encode import (
    BatchEncoder,
    CodecInfo,
    EncodeConfig,
    EncodeUnit,
    encode_batches,
    pad_batch,
    read_unit,
    set_torch_threads,
    trim_codes,
    write_unit,
)


def _error_row(unit_json: str, unit_id: str, what: str, e: Exception) -> dict:
    import traceback

    return {"unit": unit_json, "index": 0, "n_rows": 1, "header": "", "x": b"", "shape": "[]", "lengths": "[]",
            "clips": "[]", "encode_s": 0.0,
            "error": json.dumps({"unit_id": unit_id, "error": f"{what}: {type(e).__name__}: {e}",
                                 "traceback": traceback.format_exc()})}


def decode_unit(row: dict, cfg_json: str, info_json: str) -> list[dict]:
    """Stage 1: a unit row -> one row per encode batch (see the module docstring)."""
    unit_json = str(row["unit"])
    unit = EncodeUnit.from_json(unit_json)
    try:
        cfg = EncodeConfig.from_dict(json.loads(cfg_json))
        info = CodecInfo(**json.loads(info_json))
        import storage

        storage.configure(cfg.storage or None)
        ua = read_unit(unit, info, license_filter(cfg.exclude_licenses))
        clips, owner = ua.clips()
        header = json.dumps({"items": [[k, m, int(a.shape[0]), int(a.shape[1])] for k, m, a in ua.items],
                             "rejects": [asdict(r) for r in ua.rejects]}, ensure_ascii=False)
        batches = encode_batches([len(c) for c in clips], info, cfg) or [[]]
        rows = []
        for b, idx in enumerate(batches):
            x = pad_batch([clips[i] for i in idx], info.hop_num) if idx else np.zeros((0, 1, 0), np.float32)
            rows.append({"unit": unit_json, "index": b, "n_rows": len(batches), "header": header if b == 0 else "",
                         "x": x.tobytes(), "shape": json.dumps(list(x.shape)),
                         "lengths": json.dumps([len(clips[i]) for i in idx]),
                         "clips": json.dumps([[owner[i], i] for i in idx]), "encode_s": 0.0, "error": ""})
        return rows
    except Exception as e:
        return [_error_row(unit_json, unit.unit_id, "decode", e)]


class EncodeActor:
    """Stage 2: holds the codec; a batch row's audio -> its codes (int64 ``[B, Q, F]`` as .npy bytes in ``x``)."""

    def __init__(self, cfg_json: str, device: str, threads: int) -> None:
        cfg = EncodeConfig.from_dict(json.loads(cfg_json))
        self.threads = set_torch_threads(device, threads)
        self.enc = BatchEncoder(cfg, device)

    def __call__(self, batch: dict) -> dict:
        from pipelines.encode import npy_bytes

        out = {k: list(v) for k, v in batch.items()}
        for r in range(len(out["unit"])):
            shape = json.loads(str(out["shape"][r]))
            if out["error"][r] or shape[0] == 0:
                out["x"][r] = b""
                continue
            try:
                t0 = time.perf_counter()
                x = np.frombuffer(out["x"][r], np.float32).reshape(shape).copy()  # writable, as torch wants
                out["x"][r] = npy_bytes(self.enc.encode(x))
                out["encode_s"][r] = time.perf_counter() - t0
            except Exception as e:
                unit = EncodeUnit.from_json(str(out["unit"][r]))
                err = _error_row(str(out["unit"][r]), unit.unit_id, "encode", e)
                out["x"][r], out["error"][r] = b"", err["error"]
        return {k: np.array(v, dtype=object) if k in ("x", "unit", "header", "shape", "lengths", "clips", "error")
                else np.array(v) for k, v in out.items()}


def write_task(unit_json: str, cfg_json: str, info_json: str, run_id: str, rows: list[dict]) -> dict:
    """Stage 3: a unit's encoded batch rows -> its token shard(s), committed; the unit's summary."""
    import io

    import storage

    unit = EncodeUnit.from_json(unit_json)
    try:
        cfg = EncodeConfig.from_dict(json.loads(cfg_json))
        storage.configure(cfg.storage or None)
        info = CodecInfo(**json.loads(info_json))
        header = json.loads(next(r["header"] for r in rows if r["index"] == 0))
        items = [tuple(it) for it in header["items"]]
        rejects = [Reject(**r) for r in header["rejects"]]
        per_clip: dict[int, tuple[int, np.ndarray]] = {}
        for r in rows:
            pairs = json.loads(r["clips"])
            if not pairs:
                continue
            codes = np.load(io.BytesIO(r["x"]), allow_pickle=False)
            for (owner, i), c in zip(pairs, trim_codes(codes, json.loads(r["lengths"]), info)):
                per_clip[i] = (owner, c)
        per_item: list[list[np.ndarray]] = [[] for _ in items]
        for i in sorted(per_clip):  # clip order: sample by sample, channel 0 first
            owner, c = per_clip[i]
            per_item[owner].append(c)
        summary = write_unit(unit, info, cfg, run_id, items, per_item, rejects)
        summary.update({"clips": len(per_clip), "encode_s": round(sum(float(r["encode_s"]) for r in rows), 3)})
        return summary
    except Exception as e:
        return json.loads(_error_row(unit_json, unit.unit_id, "write", e)["error"])


def plan_resources(cfg: EncodeConfig, num_workers: int | None, cpus: int, gpus: int,
                   use_gpu: bool) -> tuple[int, int, float, float]:
    """(encoding actors, torch threads per CPU actor, Ray CPUs per actor, Ray CPUs per decode/write task).

    GPU: one actor per GPU (at most), each with ``actor_cpus`` (1) CPUs; decode/write tasks 1 CPU each on the rest.
    CPU: the actors share the cores (``cpus // actors`` torch threads each, at most the cores: no oversubscription);
    each asks Ray for a quarter CPU less than its threads so that the cheap decode/write tasks (a quarter CPU each)
    can be scheduled beside them, and there are at most as many actors as cores."""
    if use_gpu:
        n = max(1, min(num_workers or gpus, gpus))
        return n, 1, float(cfg.actor_cpus or 1.0), float(cfg.decode_cpus or 1.0)
    side = float(cfg.decode_cpus or 0.25)
    n = max(1, min(num_workers or cpus, cpus))
    threads = max(1, int(cfg.actor_cpus or cpus // n))
    return n, threads, max(0.01, min(float(threads), cpus / n) - side), side


def run_pipeline(cfg: EncodeConfig, info: CodecInfo, run_id: str, spec: JobSpec, todo: list,
                 on_done: Callable[[dict], None]) -> None:
    """``JobSpec.execute`` of the encode job: the three stages over ``todo`` (see the module docstring)."""
    import ray
    import ray.data

    cpus, gpus, use_gpu = start_ray_data(spec, len(todo))
    n, threads, actor_cpus, side_cpus = plan_resources(cfg, spec.num_workers, cpus, gpus, use_gpu)
    cfg_json, info_json = cfg.to_json(), json.dumps(asdict(info))
    ctx = ray.data.DataContext.get_current()
    block_size = ctx.target_max_block_size
    ctx.target_max_block_size = 1 << 20  # one encode batch per block, so that one unit's batches spread over actors
    try:
        _stream(cfg_json, info_json, run_id, todo, on_done, n, threads, actor_cpus, side_cpus, use_gpu)
    finally:
        ctx.target_max_block_size = block_size


def _stream(cfg_json: str, info_json: str, run_id: str, todo: list, on_done: Callable[[dict], None], n: int,
            threads: int, actor_cpus: float, side_cpus: float, use_gpu: bool) -> None:
    import ray
    import ray.data

    ds = ray.data.from_items([{"unit": u.to_json()} for u in todo], override_num_blocks=len(todo))
    ds = ds.flat_map(decode_unit, fn_kwargs={"cfg_json": cfg_json, "info_json": info_json}, num_cpus=side_cpus)
    ds = ds.map_batches(EncodeActor, fn_constructor_kwargs={"cfg_json": cfg_json, "device": "cuda" if use_gpu else "cpu",
                                                            "threads": threads},
                        batch_size=1, compute=ray.data.ActorPoolStrategy(size=n), num_gpus=1 if use_gpu else 0, num_cpus=actor_cpus,
                        batch_format="numpy", resources=job_resources() or None)  # cluster.yaml's node types
    writer = ray.remote(num_cpus=side_cpus, max_retries=0)(write_task)
    pending: dict[str, list[dict]] = {}
    running: list = []
    unit_of: dict = {}

    def finish(refs: list) -> None:
        for ref in refs:
            try:
                s = ray.get(ref)
            except Exception as e:  # the task's worker died: this unit fails alone, a rerun redoes it
                s = {"unit_id": unit_of[ref], "error": f"write task lost: {type(e).__name__}: {e}"}
            on_done(s)

    for row in ds.iter_rows():
        unit_json = str(row["unit"])
        uid = EncodeUnit.from_json(unit_json).unit_id
        got = pending.setdefault(uid, [])
        got.append({k: row[k] for k in ("index", "header", "x", "lengths", "clips", "encode_s", "error")})
        if len(got) < int(row["n_rows"]):
            continue
        rows = pending.pop(uid)
        errors = [r["error"] for r in rows if r["error"]]
        if errors:
            on_done(json.loads(errors[0]))
            continue
        ref = writer.remote(unit_json, cfg_json, info_json, run_id, rows)
        unit_of[ref] = uid
        running.append(ref)
        done, running = ray.wait(running, num_returns=len(running), timeout=0)
        finish(done)
    finish(running)
    for uid in pending:  # cannot happen unless a stage lost rows; never leave a unit unreported
        on_done({"unit_id": uid, "error": "the pipeline lost some of this unit's batches"})
