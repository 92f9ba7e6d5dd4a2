"""Encode job speed: where an actor's time goes, and the whole job against the raw model, side by side in one run.

``profile``: one process, one torch thread, the actor-per-unit processor (``UnitEncoder.process``) over every segment
shard under cProfile; prints the time per stage (tar read, FLAC decode, padding, model, trim, tar + manifests) with
padding waste and batch shapes, and the model on the same batches with 1 and 2 threads.

``compare`` (default): on a local Ray of ``--cpus`` CPUs, (a) the raw model's batched encode of the job's own
batches in one process on one thread (× realtime per core), then (b) the whole job, ``matalu encode``'s code path,
for the actor-per-unit path and the streaming pipeline with 1 and 2 actors, each into a fresh output; audio counted
per channel (a dialog's two channels are two clips). Ratios are job / (raw per core × cores).
``--gpu`` runs the pipeline on the GPU as well, and ``--variants`` measures how many codes bf16 / torch.compile
change against fp32 on the same batches.

Usage: python benchmarks/encode.py [profile|compare] --segments OUT --codec CKPT [--cpus 2] [--json F]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("PYTHONPATH", str(ROOT))


def _units(segments: str, codec_id: str, n: int = 0):
    """The job's units; ``n``: only the first ``n`` of each kind (mono, dialog), for a shorter measurement."""
    from pipelines.encode import make_units

    units = make_units(segments, codec_id)
    if n:
        units = [u for kind in ("mono", "dialog") for u in [v for v in units if v.kind == kind][:n]]
    return units


def _batches(cfg, units):
    """The job's own encode batches (padded [B, 1, L]) over every unit, and the clip-seconds they hold."""
    from manifests.licenses import license_filter
    from pipelines.encode import BatchEncoder, encode_batches, pad_batch, read_unit

    enc = BatchEncoder(cfg, "cpu")
    out, clip_s, padded_s = [], 0.0, 0.0
    for u in units:
        ua = read_unit(u, enc.info, license_filter([]))
        clips, _ = ua.clips()
        for idx in encode_batches([len(c) for c in clips], enc.info, cfg):
            x = pad_batch([clips[i] for i in idx], enc.info.hop_num)
            out.append(x)
            clip_s += sum(len(clips[i]) for i in idx) / enc.info.sample_rate
            padded_s += x.shape[0] * x.shape[-1] / enc.info.sample_rate
    return enc, out, clip_s, padded_s


def _raw(enc, batches, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    enc.encode(batches[0][:1, :, : 16000])  # warm-up
    t0 = time.perf_counter()
    for x in batches:
        enc.encode(x)
    return time.perf_counter() - t0


def _raw_worker(args) -> float:
    """One of ``n`` processes of :func:`_raw_parallel`: every ``n``-th batch, one torch thread, after a barrier."""
    import torch

    segments, codec, batch_seconds, units_n, i, n, barrier = args
    sys.path.insert(0, str(ROOT))
    from codec.adapters import load_codec
    from pipelines.encode import EncodeConfig

    torch.set_num_threads(1)
    cfg = EncodeConfig(segments=segments, codec=codec, batch_seconds=batch_seconds)
    units = _units(segments, str(load_codec(codec, "cpu").codec_id), units_n)
    enc, batches, _, _ = _batches(cfg, units)
    mine = batches[i::n]
    if mine:
        enc.encode(mine[0][:1, :, : 16000])  # warm-up
    barrier.wait()
    t0 = time.perf_counter()
    for x in mine:
        enc.encode(x)
    return time.perf_counter() - t0


def _raw_parallel(a, n: int) -> float:
    """The raw model on ``n`` cores as the job's CPU actors use them: ``n`` processes of one torch thread each,
    started together, the batches dealt round-robin; the wall time until the last one finishes."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(n)
        with ctx.Pool(n) as pool:
            times = pool.map(_raw_worker, [(a.segments, a.codec, a.batch_seconds, a.units, i, n, barrier)
                                           for i in range(n)])
    return max(times)


def profile(a) -> dict:
    import torch

    from pipelines.encode import EncodeConfig, UnitEncoder

    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="enc-prof-")
    cfg = EncodeConfig(segments=a.segments, codec=a.codec, out=out, batch_seconds=a.batch_seconds)
    proc = UnitEncoder(cfg, "profile", "cpu")
    torch.set_num_threads(1)
    units = _units(a.segments, proc.codec_id, a.units)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    sums = [proc.process(u) for u in units]
    prof.disable()
    wall = time.perf_counter() - t0
    print(f"UnitEncoder.process over {len(units)} units: {wall:.1f} s", flush=True)
    st = pstats.Stats(prof)
    cum: dict[str, float] = {}
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
        cum[f"{Path(file).name}:{fn}"] = cum.get(f"{Path(file).name}:{fn}", 0.0) + ct
    stages = {
        "tar read (iter_shard)": cum.get("shards.py:iter_shard", 0.0),
        "FLAC decode (decode_audio)": cum.get("audio.py:decode_audio", 0.0),
        "pad batches (pad_batch)": cum.get("encode.py:pad_batch", 0.0),
        "model encode (codec.encode)": cum.get("encode.py:encode", 0.0),
        "trim codes": cum.get("encode.py:trim_codes", 0.0),
        "token tar write (ShardWriter)": sum(v for k, v in cum.items() if k.startswith("shards.py:") and
                                            k.split(":")[1] in ("write", "close", "__exit__")),
        "manifest parts + _DONE (commit_unit)": cum.get("runner.py:commit_unit", 0.0),
    }
    enc, batches, clip_s, padded_s = _batches(cfg, units)
    shapes: dict[str, int] = {}
    for x in batches:
        k = f"{x.shape[0]}x{x.shape[-1] / 16000:.0f}s"
        shapes[k] = shapes.get(k, 0) + 1
    audio_s = sum(s["seconds"] for s in sums)
    t1 = _raw(enc, batches, 1)
    t2 = _raw(enc, batches, 2)
    torch.set_num_threads(1)
    shutil.rmtree(out, ignore_errors=True)
    r = {"units": len(units), "audio_s": round(audio_s, 1), "clip_s": round(clip_s, 1), "wall_s": round(wall, 2),
         "x_realtime_clip_s": round(clip_s / wall, 1),
         "stages_s": {k: round(v, 3) for k, v in stages.items()},
         "stages_pct": {k: round(100 * v / wall, 1) for k, v in stages.items()},
         "padding_waste_pct": round(100 * (padded_s - clip_s) / padded_s, 1), "batches": len(batches),
         "batch_shapes": dict(sorted(shapes.items(), key=lambda kv: -kv[1])[:12]),
         "model_same_batches_1_thread_x_rt": round(clip_s / t1, 1), "model_same_batches_2_threads_x_rt": round(clip_s / t2, 1)}
    print(json.dumps(r, indent=2))
    return r


def compare(a) -> dict:
    import ray
    import torch

    from pipelines.encode import EncodeConfig, run_encode

    torch.set_num_threads(1)
    cfg0 = EncodeConfig(segments=a.segments, codec=a.codec, batch_seconds=a.batch_seconds)
    from codec.adapters import load_codec

    codec_id = str(load_codec(a.codec, "cpu").codec_id)
    units = _units(a.segments, codec_id, a.units)
    if a.units:  # the jobs run over the same shards: a segments folder holding only them
        sub = tempfile.mkdtemp(prefix="enc-bench-seg-")
        for u in units:
            dst = Path(sub, "segments", u.source, u.kind)
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy(u.segment_uri, dst / f"{u.name}.tar")
        a.segments = cfg0.segments = sub
    enc, batches, clip_s, _ = _batches(cfg0, units)
    raw = {"1 thread": clip_s / _raw(enc, batches, 1)}
    print(f"raw model, the job's {len(batches)} batches ({clip_s:.0f} clip-s), one process: "
          f"{raw['1 thread']:.1f}x realtime on 1 thread", flush=True)
    # the same cores as the job: two (cpus) processes at once do not run at twice one process's speed when the
    # cores share caches, memory bandwidth or a physical core; the job is measured against what its cores can do
    raw[f"{a.cpus} processes"] = clip_s / _raw_parallel(a, a.cpus)
    raw[f"{a.cpus} threads"] = clip_s / _raw(enc, batches, a.cpus)
    torch.set_num_threads(1)
    best = max(raw[f"{a.cpus} processes"], raw[f"{a.cpus} threads"])
    print(f"raw model on the same {a.cpus} cores: {raw[f'{a.cpus} processes']:.1f}x realtime as {a.cpus} processes "
          f"of 1 thread, {raw[f'{a.cpus} threads']:.1f}x as 1 process of {a.cpus} threads "
          f"({best / raw['1 thread']:.2f}x one core)", flush=True)
    variants = {}
    if a.variants:
        from pipelines.encode import BatchEncoder, code_change

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        ref = BatchEncoder(cfg0, dev)
        for name, kw in (("bf16", {"precision": "bf16"}), ("compile", {"compile": True}),
                         ("compile+cudagraphs", {"compile": True, "compile_mode": "reduce-overhead"})):
            if name == "compile+cudagraphs" and dev == "cpu":
                continue
            other = BatchEncoder(EncodeConfig(segments=a.segments, codec=a.codec, batch_seconds=a.batch_seconds, **kw), dev)
            n = sum(code_change(ref, other, x) * x.shape[0] for x in batches) / sum(x.shape[0] for x in batches)
            variants[name] = round(100 * n, 3)
            print(f"  {name} on {dev}: {variants[name]}% of codes differ from fp32", flush=True)
    from jobs.cluster import init_ray

    init_ray(None, a.cpus, attempts=3)  # retried: a loaded machine can miss Ray's 30 s start-up wait
    runs = []
    plans = [(False, 1), (False, 2), (True, 1), (True, 2)] if not a.gpu else [(False, 1), (True, 1)]
    for rep in range(a.repeat):
        for pipeline, workers in plans:
            out = tempfile.mkdtemp(prefix="enc-bench-")
            # one torch thread per actor, so 1 -> 2 actors measures scaling, not threads
            cfg = EncodeConfig(segments=a.segments, codec=a.codec, out=out, batch_seconds=a.batch_seconds,
                               num_workers=workers, pipeline=pipeline, use_gpu=bool(a.gpu),
                               actor_cpus=None if a.gpu else 1.0)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = run_encode(cfg, say=lambda s: None, progress=False)
            wall = time.perf_counter() - t0
            assert res.committed, res
            shutil.rmtree(out, ignore_errors=True)
            r = {"path": "pipeline" if pipeline else "actor per unit", "actors": workers, "repeat": rep,
                 "wall_s": round(wall, 2), "clip_x_rt": round(clip_s / wall, 1),
                 "ratio_vs_raw_x_cores": round(clip_s / wall / (raw["1 thread"] * a.cpus), 3),
                 "ratio_vs_raw_same_cores": round(clip_s / wall / best, 3),
                 "actor_busy": round(float(res.totals.get("encode_s", 0.0)) / (wall * workers), 3),
                 "load_before": round(load0, 1), "load_after": round(os.getloadavg()[0], 1)}
            runs.append(r)
            print(f"  {r['path']:15s} {workers} actor(s): {wall:6.1f} s, {r['clip_x_rt']:6.1f}x realtime "
                  f"(clip-s), {r['ratio_vs_raw_same_cores']:.2f} of raw on the same cores ({r['ratio_vs_raw_x_cores']:.2f} of "
                  f"1 core x {a.cpus}); actors busy {100 * r['actor_busy']:.0f}% of wall; load {r['load_before']} -> "
                  f"{r['load_after']}", flush=True)
    ray.shutdown()
    return {"clip_s": round(clip_s, 1), "batches": len(batches), "raw_x_rt_per_core": round(raw["1 thread"], 1),
            "raw_x_rt_same_cores": {k: round(v, 1) for k, v in raw.items()},
            "cpus": a.cpus, "runs": runs, "code_change_pct": variants}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="compare", choices=["profile", "compare"])
    ap.add_argument("--segments", required=True, help="an ingest output or a folder of segment shards")
    ap.add_argument("--codec", required=True, help="a codec checkpoint (random weights measure the same speed)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--batch-seconds", type=float, default=240.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--units", type=int, default=0, help="only the first N segment shards of each kind")
    ap.add_argument("--gpu", action="store_true", help="encode on the GPU (actors num_gpus=1)")
    ap.add_argument("--variants", action="store_true", help="measure codes changed by bf16 / torch.compile")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    r = profile(a) if a.mode == "profile" else compare(a)
    r["loadavg_end"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n")


if __name__ == "__main__":
    main()
