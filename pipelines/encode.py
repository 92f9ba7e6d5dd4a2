"""The encode job: segment shards -> codec tokens (docs/DESIGN.md §1, §4, §8, §11).

``matalu encode --segments URI --codec CKPT|TS_FILE|module:factory --out URI``

* A work unit is one segment shard. Its fingerprint is sha256(job version, codec_id, the segment shard's
  sha256 (from the ingest manifests when present, else from its bytes), its relative path); a unit whose
  ``_DONE`` marker holds the same fingerprint, and whose token shards still exist, is skipped (resume).
* Ray Data ``map_batches`` over units with a model-holding class (:func:`make_encoder` on :class:`jobs.runner.UnitActor`; ``num_gpus=1`` per
  actor when the cluster has GPUs, CPU actors otherwise). Inside a unit, clips (each channel of a ``dialog``
  sample is a clip) are sorted by length and cut into batches of similar length (``batch_seconds`` of padded
  audio, at most ``max_batch`` clips), zero-padded on the right to a whole frame, encoded, and trimmed back to
  ``ceil(samples / hop)`` frames each (for our causal codec right padding cannot change earlier frames: batched
  latents equal one-by-one latents to float rounding, so codes differ only where rounding flips a near-tie).
* Output, all under ``T = <out>/tokens/<codec_id>``::

      T/<source>/<kind>/<segment shard name>.tar   <key>.codes.npy  int16 [channels × Q, frames] (ch 0 first)
                                                   <key>.json       the segment sample's JSON + codec_id,
                                                                    frames, frame_rate, num_codebooks, …
      T/manifests/parts/<unit>/{samples,shards,rejects}.parquet + _DONE   per unit, _DONE last
      T/manifests/{samples,shards,rejects,runs}.parquet, config-<run>.json  merged after every unit is done
      T/_SUCCESS                                                    last: the run is committed

  ``samples`` rows are :class:`manifests.rows.Sample` with ``codec_id`` set and ``shard`` = the token shard;
  ``shards`` rows have ``kind="tokens"``. ``--exclude-license GLOB`` leaves out samples whose licence matches
  (as ingestion does for recordings): each is a ``rejects`` row (stage ``encode``, reason ``license_excluded``),
  so segment samples = token samples + rejects. A shard member the ingest's ``samples`` manifest no longer lists
  (a duplicate the run-level step rejected after its unit wrote the shard) is a reject too (``not_in_samples``).

Frame rule: a clip of ``n`` samples gives ``ceil(n / hop)`` frames, ``hop = sample_rate / frame_rate``; the
segment JSON's ``duration_s`` is ``n / 16000`` rounded to 4 decimals, so frames = ceil(duration_s × frame_rate).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from typing import Callable

import numpy as np

import storage
from jobs.cluster import init_ray
from jobs.runner import JobResult, JobSpec, commit_unit, new_run_id, run_job
from manifests.io import manifest_uri, read_table
from manifests.licenses import license_filter
from manifests.rows import Reject, Sample, Shard

log = logging.getLogger("matalu.encode")
ENCODE_VERSION = 1  # bump when this job's output for the same input and codec changes


@dataclass
class EncodeConfig:
    segments: str = "data/out"  # an ingest output (its segments/ folder) or a folder of segment shards
    codec: str = ""  # codec.pt / training output / TorchScript file / module:factory
    out: str = "data/out"
    address: str | None = None
    num_workers: int | None = None  # encoding actors (default: one per GPU, else one per CPU)
    num_cpus: int | None = None  # CPUs of a local Ray started by this job
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    batch_seconds: float = 240.0  # padded audio per encode batch
    max_batch: int = 64
    max_shard_samples: int = 100_000  # token shards mirror segment shards; limits only split huge ones
    max_shard_bytes: int = 256 * 1024 * 1024
    exclude_licenses: list[str] = field(default_factory=list)  # glob patterns; matching samples become rejects
    storage: dict = field(default_factory=dict)
    # True: streaming Ray Data stages (pipelines/encode_stream.py); False: one actor per unit; None (default): the
    # pipeline on GPUs (decoding off the GPU actor's core, so the GPU is not starved), one actor per unit on CPUs
    # (measured faster there: the pipeline's decode and write tasks take the cores the model needs; RESULTS.md [14])
    pipeline: bool | None = None
    actor_cpus: float | None = None  # CPUs (= torch threads) per CPU encoding actor (default: the cluster's / actors)
    decode_cpus: float | None = None  # CPUs per decode/write task (default: 1 with GPUs, else 0.25: they are cheap)
    precision: str = "fp32"  # "bf16": autocast the encoder (GPU; changes some codes: measure with benchmarks/encode.py)
    compile: bool = False  # torch.compile the encoder (GPU; compile_mode "reduce-overhead" uses CUDA graphs)
    compile_mode: str = ""

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision {self.precision!r}: use fp32 or bf16")
        if self.batch_seconds <= 0 or self.max_batch < 1:
            raise ValueError("batch_seconds must be > 0 and max_batch >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "EncodeConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class EncodeUnit:
    unit_id: str
    segment_uri: str
    source: str
    kind: str
    name: str  # shard file name without .tar
    fingerprint: str = ""
    # the shard's samples the ingest manifests still list, when they list fewer than the shard holds (the run-level
    # duplicate step rejects samples after their unit wrote them): the others become rejects; None: all of them
    only: list[str] | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, s: str) -> "EncodeUnit":
        return cls(**json.loads(s))


@dataclass
class EncodeResult(JobResult):
    """The encode job's :class:`jobs.runner.JobResult` (``out`` = ``<out>/tokens/<codec_id>``)."""

    codec_id: str = ""


def uses_pipeline(pipeline: bool | None, use_gpu: bool) -> bool:
    """Whether the job runs as the streaming pipeline: as asked, else on GPUs only (see ``EncodeConfig.pipeline``)."""
    return bool(use_gpu) if pipeline is None else bool(pipeline)


def tokens_root(out: str, codec_id: str) -> str:
    return storage.join(out, "tokens", codec_id)


def segments_dir(segments: str) -> tuple[str, str | None]:
    """(folder holding <source>/<kind>/*.tar, the ingest output whose manifests describe them or None)."""
    seg = storage.join(segments, "segments")
    if storage.list_files(seg, ".tar"):
        return seg, segments
    if segments.rstrip("/").endswith("/segments"):
        return segments, segments.rstrip("/")[: -len("/segments")]
    return segments, None


def make_units(segments: str, codec_id: str, exclude_licenses: list[str] | None = None,
               variant: str = "") -> list[EncodeUnit]:
    """One unit per segment shard; ``variant`` (settings that change codes, e.g. bf16) goes into the fingerprint."""
    seg_dir, ingest_out = segments_dir(segments)
    files = [f for f in storage.list_files(seg_dir, ".tar") if "/tokens/" not in f[len(seg_dir):]]
    if not files:
        raise FileNotFoundError(f"no segment shards (*.tar) under {segments}")
    known: dict[str, str] = {}
    listed: dict[str, list[str]] = {}  # shard -> the sample ids the ingest manifests list, where fewer than it holds
    if ingest_out is not None:
        m = manifest_uri(ingest_out, "shards")
        if storage.exists(m):
            t = read_table(m, Shard)
            known = dict(zip(t.column("uri").to_pylist(), t.column("sha256").to_pylist()))
            listed = _listed_samples(ingest_out, dict(zip(t.column("uri").to_pylist(), t.column("n_samples").to_pylist())))
    units = []
    for f in files:
        rel = f[len(seg_dir.rstrip("/")) + 1:]
        parts = rel.split("/")
        name = parts[-1][: -len(".tar")]
        source = parts[0] if len(parts) >= 2 else "unknown"
        kind = parts[1] if len(parts) >= 3 else "mono"
        sha = known.get(f) or storage.sha256_bytes(storage.read_bytes(f))
        key = f"{ENCODE_VERSION}|{codec_id}|{sha}|{rel}"
        if exclude_licenses:  # another licence filter redoes the unit
            key += "|exclude=" + ",".join(sorted(exclude_licenses))
        if variant:
            key += "|" + variant
        only = listed.get(f)
        if only is not None:
            key += "|only=" + hashlib.sha256("\n".join(only).encode()).hexdigest()
        fp = hashlib.sha256(key.encode()).hexdigest()
        uid = "-".join(p.replace(".", "_") for p in rel[: -len(".tar")].split("/"))
        units.append(EncodeUnit(uid, f, source, kind, name, fp, only))
    return units


def _listed_samples(ingest_out: str, n_in_shard: dict[str, int]) -> dict[str, list[str]]:
    """For each shard whose samples the ingest's ``samples`` manifest lists fewer of than the shard holds (samples
    rejected after their unit wrote them: run-level duplicates), the sorted ids it lists."""
    m = manifest_uri(ingest_out, "samples")
    if not storage.exists(m):
        return {}
    t = read_table(m, Sample).select(["sample_id", "shard"])
    by_shard: dict[str, list[str]] = {}
    for sid, shard in zip(t.column("sample_id").to_pylist(), t.column("shard").to_pylist()):
        by_shard.setdefault(shard, []).append(sid)
    return {u: sorted(by_shard.get(u, [])) for u, n in n_in_shard.items() if len(by_shard.get(u, [])) < (n or 0)}


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def length_buckets(lengths: list[int], batch_samples: int, max_batch: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches whose padded size (count × longest) stays under
    ``batch_samples`` (a clip longer than that gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and (len(cur) >= max_batch or (len(cur) + 1) * lengths[i] > batch_samples):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


@dataclass
class CodecInfo:
    """What the CPU stages need to know of a codec without loading it (ids, rates, the frame hop)."""

    codec_id: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    hop_num: int  # the hop in samples per frame, as a fraction (EnCodec 24 kHz at 16 kHz: 640/3)
    hop_den: int

    @classmethod
    def of(cls, codec) -> "CodecInfo":
        from codec.base import frame_hop

        hop = frame_hop(codec)
        return cls(str(codec.codec_id), int(codec.sample_rate), float(codec.frame_rate), int(codec.num_codebooks),
                   int(codec.codebook_size), hop.numerator, hop.denominator)

    @property
    def hop(self) -> Fraction:
        return Fraction(self.hop_num, self.hop_den)


@dataclass
class UnitAudio:
    """A segment shard read and decoded: its kept samples (key, JSON, float32 audio [channels, samples]) and the
    samples left out as rejects."""

    items: list[tuple[str, dict, np.ndarray]]
    rejects: list[Reject]

    def clips(self) -> tuple[list[np.ndarray], list[int]]:
        """Every channel of every sample as a clip (a dialog: channel 0 first), and the sample each belongs to."""
        clips, owner = [], []
        for n, (_, _, audio) in enumerate(self.items):
            for c in range(audio.shape[0]):
                clips.append(audio[c])
                owner.append(n)
        return clips, owner


def read_unit(unit: EncodeUnit, info: CodecInfo, keep) -> UnitAudio:
    """Read and decode one segment shard; samples whose licence ``keep`` excludes become rejects."""
    from storage.audio import read_sample

    items: list[tuple[str, dict, np.ndarray]] = []
    rejects: list[Reject] = []
    only = set(unit.only) if unit.only is not None else None
    for key, members in storage.iter_shard(unit.segment_uri):
        meta, audio = read_sample(members)
        if only is not None and key not in only:
            rejects.append(Reject(item=key, stage="encode", reason="not_in_samples",
                                  detail="the ingest run rejected this sample after writing its shard (its rejects "
                                         "say why: a duplicate); it is not encoded",
                                  source=unit.source, recording_id=meta.get("recording_id", ""),
                                  seconds=meta.get("duration_s")))
            continue
        if not keep(meta):
            rej = keep.reject({"source": unit.source, **meta}, stage="encode")
            rej.item = key  # the sample, not its recording
            rejects.append(rej)
            continue
        sr = int(meta.get("sample_rate") or info.sample_rate)
        if sr != info.sample_rate:
            raise ValueError(f"{key}: {sr} Hz audio, codec {info.codec_id} wants {info.sample_rate} Hz")
        items.append((key, meta, audio))
    return UnitAudio(items, rejects)


def encode_batches(lengths: list[int], info: CodecInfo, cfg: EncodeConfig) -> list[list[int]]:
    """The clips' encode batches: :func:`length_buckets` of ``cfg.batch_seconds`` padded audio."""
    return length_buckets(lengths, int(cfg.batch_seconds * info.sample_rate), cfg.max_batch)


def pad_batch(clips: list[np.ndarray], pad_to: int) -> np.ndarray:
    """Clips zero-padded on the right into ``[B, 1, L]`` float32, ``L`` a multiple of ``pad_to`` (a whole frame)."""
    longest = max(len(c) for c in clips)
    longest += (-longest) % pad_to
    x = np.zeros((len(clips), 1, max(longest, pad_to)), np.float32)
    for b, c in enumerate(clips):
        x[b, 0, : len(c)] = c
    return x


def trim_codes(codes: np.ndarray, lengths: list[int], info: CodecInfo) -> list[np.ndarray]:
    """A batch's codes ``[B, Q, F]`` cut back to ``ceil(length / hop)`` frames per clip."""
    from codec.base import num_frames

    out = []
    for b, n in enumerate(lengths):
        f = num_frames(n, info.hop)
        if codes.shape[-1] < f:
            raise ValueError(f"codec {info.codec_id} gave {codes.shape[-1]} frames for {n} samples; expected at least {f}")
        out.append(codes[b, :, :f])
    return out


def set_torch_threads(device: str, cpus: float | None = None) -> int:
    """torch threads of an encoding process: the CPUs Ray gave it (its ``CPU`` resource; 1 when unknown), so that
    actors sharing a node do not oversubscribe its cores. Returns the count set (GPU actors: left as is)."""
    import torch

    if device != "cpu":
        return torch.get_num_threads()
    if cpus is None:
        try:
            import ray

            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
        except Exception:
            cpus = 1.0
    n = max(1, int(cpus))
    torch.set_num_threads(n)
    return n


class BatchEncoder:
    """Holds the codec on its device and encodes padded batches (optionally under bf16 autocast or torch.compile,
    see :class:`EncodeConfig`; both off by default because they change codes)."""

    def __init__(self, cfg: EncodeConfig, device: str = "cpu") -> None:
        import torch

        from codec.adapters import load_codec
        from codec.base import check_codec

        storage.configure(cfg.storage or None)
        self.cfg, self.device = cfg, device
        self.codec = check_codec(load_codec(cfg.codec, device), cfg.codec)
        self.info = CodecInfo.of(self.codec)
        self._encode = self.codec.encode
        if cfg.compile:
            self._encode = torch.compile(self.codec.encode, mode=cfg.compile_mode or None, dynamic=True)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``[B, 1, L]`` float32 -> int64 codes ``[B, Q, F]``."""
        import torch

        with torch.inference_mode():
            xt = torch.from_numpy(x).to(self.device)
            if self.cfg.precision == "bf16":
                with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16):
                    codes = self._encode(xt)
            else:
                codes = self._encode(xt)
            return codes.cpu().numpy()

    def encode_clips(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """int64 codes [Q, ceil(len / hop)] per clip, batched by length."""
        out: list[np.ndarray | None] = [None] * len(clips)
        for idx in encode_batches([len(c) for c in clips], self.info, self.cfg):
            codes = self.encode(pad_batch([clips[i] for i in idx], self.info.hop_num))
            for i, c in zip(idx, trim_codes(codes, [len(clips[i]) for i in idx], self.info)):
                out[i] = c
        return out  # type: ignore[return-value]


def code_change(ref: BatchEncoder, other: BatchEncoder, x: np.ndarray) -> float:
    """The fraction of codes ``other`` (e.g. bf16 or compiled) gives differently from ``ref`` on the batch ``x``."""
    a, b = ref.encode(x), other.encode(x)
    if a.shape != b.shape:
        raise ValueError(f"codes of shape {b.shape} against {a.shape}: the variants disagree on frames or levels")
    return float((a != b).mean())


def write_unit(unit: EncodeUnit, info: CodecInfo, cfg: EncodeConfig, run_id: str,
               items: list[tuple[str, dict, int, int]], codes: list[list[np.ndarray]], rejects: list[Reject]) -> dict:
    """Write one unit's token shard(s) and commit it (:func:`jobs.runner.commit_unit`). ``items``: (key, segment JSON,
    channels, samples) per kept sample; ``codes``: its channels' codes, channel 0 first. Returns counts."""
    Q, K = info.num_codebooks, info.codebook_size
    root = tokens_root(cfg.out, info.codec_id)
    base = storage.join(root, unit.source, unit.kind)
    writer = storage.ShardWriter(
        lambda part: storage.join(base, f"{unit.name}.tar" if part == 0 else f"{unit.name}_{part:03d}.tar"),
        max_bytes=cfg.max_shard_bytes, max_samples=cfg.max_shard_samples)
    samples: list[Sample] = []
    seconds: dict[int, float] = {}
    with writer:
        for (key, meta, channels, n), cs in zip(items, codes):
            arr = np.concatenate(cs, axis=0)  # [channels × Q, frames]
            if K > 32768 or arr.min(initial=0) < 0 or arr.max(initial=0) >= K:
                raise ValueError(f"{key}: codes outside 0..{K - 1} or not representable as int16")
            arr16 = arr.astype(np.int16)
            m = dict(meta)
            m.update({"codec_id": info.codec_id, "frames": int(arr.shape[1]), "frame_rate": float(info.frame_rate),
                      "num_codebooks": Q, "codebook_size": K, "codes_shape": list(arr16.shape),
                      "num_samples": int(n), "segment_shard": unit.segment_uri})
            part = writer.write(key, {"codes.npy": npy_bytes(arr16),
                                      "json": json.dumps(m, ensure_ascii=False, sort_keys=True).encode()})
            dur = float(meta.get("duration_s") or n / info.sample_rate)
            seconds[part] = seconds.get(part, 0.0) + dur
            row = dict(meta)
            row.update({"codec_id": info.codec_id, "shard": ""})
            row.setdefault("sample_id", key)
            row.setdefault("kind", unit.kind)
            row.setdefault("source", unit.source)
            row.setdefault("recording_id", "")
            row.setdefault("start_s", 0.0)
            row.setdefault("end_s", dur)
            row.setdefault("duration_s", dur)
            row.setdefault("channels", int(channels))
            samples.append(Sample.from_dict(row))
    for smp in samples:
        smp.shard, smp.tar_offset, smp.tar_bytes = writer.location(smp.sample_id)
    shards = [Shard(uri=i.uri, kind="tokens", sample_kind=unit.kind, source=unit.source, unit=unit.unit_id,
                    n_samples=i.n_samples, seconds=round(seconds.get(p, 0.0), 3), bytes=i.bytes, sha256=i.sha256,
                    codec_id=info.codec_id, created_by=run_id)
              for p, i in enumerate(writer.shards)]
    commit_unit(root, unit.unit_id, unit.fingerprint, run_id,
                {"samples": (samples, Sample), "shards": (shards, Shard), "rejects": (rejects, Reject)},
                [s.uri for s in shards])
    return {"unit_id": unit.unit_id, "samples": len(samples), "rejects": len(rejects),
            "seconds": round(sum(n for *_, n in items) / float(info.sample_rate), 3)}


class UnitEncoder(BatchEncoder):
    """The actor-per-unit path (``pipeline=False``): one actor reads, decodes, encodes and writes a whole unit."""

    def __init__(self, cfg: EncodeConfig, run_id: str = "", device: str = "cpu") -> None:
        set_torch_threads(device)
        super().__init__(cfg, device)
        self.run_id = run_id
        self.codec_id = self.info.codec_id
        self.root = tokens_root(cfg.out, self.codec_id)
        self.keep = license_filter(cfg.exclude_licenses)

    def process(self, unit: EncodeUnit) -> dict:
        t0 = time.perf_counter()
        ua = read_unit(unit, self.info, self.keep)
        clips, owner = ua.clips()
        codes = self.encode_clips(clips)
        per_item: list[list[np.ndarray]] = [[] for _ in ua.items]
        for n, c in zip(owner, codes):
            per_item[n].append(c)
        t_enc = time.perf_counter() - t0
        items = [(key, meta, a.shape[0], a.shape[1]) for key, meta, a in ua.items]
        summary = write_unit(unit, self.info, self.cfg, self.run_id, items, per_item, ua.rejects)
        summary.update({"clips": len(clips), "encode_s": round(t_enc, 3), "elapsed_s": round(time.perf_counter() - t0, 3)})
        return summary


def make_encoder(cfg_json: str, run_id: str, device: str) -> UnitEncoder:
    """The encode job's unit processor on a Ray actor (holds the codec, on the actor's GPU when it has one)."""
    return UnitEncoder(EncodeConfig.from_dict(json.loads(cfg_json)), run_id, device)


def run_encode(cfg: EncodeConfig, *, command: str = "matalu encode", say: Callable[[str], None] = print,
               progress: bool = False) -> EncodeResult:
    from codec.adapters import load_codec
    from codec.base import check_codec

    if not cfg.codec:
        raise ValueError("no codec given (--codec CKPT|TS_FILE|module:factory)")
    storage.configure(cfg.storage or None)
    started = datetime.now(timezone.utc)
    run_id = new_run_id(started)
    codec = check_codec(load_codec(cfg.codec, "cpu"), cfg.codec)  # the driver only needs its id and rates
    info = CodecInfo.of(codec)
    codec_id = info.codec_id
    del codec
    root = tokens_root(cfg.out, codec_id)
    variant = ",".join(v for v in (f"precision={cfg.precision}" if cfg.precision != "fp32" else "",
                                   f"compile={cfg.compile_mode or 'default'}" if cfg.compile else "") if v)
    units = make_units(cfg.segments, codec_id, cfg.exclude_licenses, variant)
    say(f"[encode] codec {codec_id}: {len(units)} segment shards")
    use_gpu = cfg.use_gpu
    if use_gpu is None:  # decide here, so the actors' device and their GPU request agree
        init_ray(cfg.address, cfg.num_cpus)
        import ray

        use_gpu = int(ray.cluster_resources().get("GPU", 0)) > 0
    spec = JobSpec(
        name="encode", root=root, units=units, unit_type=EncodeUnit,
        make_processor=functools.partial(make_encoder, cfg.to_json(), run_id, "cuda" if use_gpu else "cpu"),
        tables=(("samples", Sample), ("shards", Shard), ("rejects", Reject)), config=cfg.to_dict(),
        run_id=run_id, command=command, started=started, address=cfg.address, num_cpus=cfg.num_cpus,
        num_workers=cfg.num_workers, use_gpu=use_gpu, shard_prefix=root,
        optional_parts=("rejects",),  # parts written before rejects existed (encode job v1 outputs): no rejects
        success_extra={"codec_id": codec_id}, totals=("samples", "rejects", "seconds", "encode_s"),
        progress_line=lambda t, el: f"{t['seconds'] / 3600:.2f} h, {t['samples']} samples, {t['seconds'] / max(el, 1e-9):.0f}x rt",
        end_line=lambda t, wall: (f"[encode] {t['seconds'] / 3600:.3f} h of audio in {wall:.1f} s wall; actor encode time "
                                  f"{t['encode_s']:.1f} s = {t['seconds'] / max(t['encode_s'], 1e-9):.0f}x realtime per actor"),
        result_type=EncodeResult, result_extra={"codec_id": codec_id},
    )
    if uses_pipeline(cfg.pipeline, use_gpu):
        from pipelines.encode_stream import run_pipeline

        spec.execute = functools.partial(run_pipeline, cfg, info, run_id)
    return run_job(spec, say=say, progress=progress)
