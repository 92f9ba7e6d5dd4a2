"""Audio LM training over token shards, on Ray Train (``TorchTrainer``) or in this process (``--local``).

``matalu lm train [--config FILE] --data TOKENS_URI --out URI [--size tiny|125m|1b] [--steps N] [--num-workers N]
[--gpu] [--fsdp] [--local] [--init hf:DIR] [--lora RANK] [--address ADDR]``

* **Workers**: :func:`train_ray` runs :func:`_loop` on ``num_workers`` Ray Train workers: DDP (gloo on CPU, nccl on
  GPU; the loss module is what DDP wraps, so gradients sync through DDP's forward), or FSDP2 with ``fsdp``
  (``torch.distributed.fsdp.fully_shard`` on every transformer block, then the model; bf16 parameters and fp32
  gradient reduction on GPU). :func:`train_local` runs the same loop in this process.
* **Step**: ``grad_accum`` micro-batches of ``batch_size`` packed windows per worker (no gradient sync until the
  last), bf16 autocast on GPU, gradient clipping at ``grad_clip``, AdamW (decay on matrices only) with a linear
  warm-up over ``warmup_steps`` then a cosine down to ``min_lr_ratio × lr`` at ``steps``.
* **Checkpoints** every ``ckpt_every`` steps and at the end (lm/checkpoint.py, local or ``s3://``, the last
  ``keep_checkpoints`` kept): model, optimizer, scheduler, step, every rank's loader position and RNG states, the
  configs, the tokenizer and the data's lineage. Ray Train gets a pointer checkpoint at each save
  (``RunConfig(storage_path=<out>/ray)``, ``CheckpointConfig(num_to_keep=keep_checkpoints)``), and
  ``FailureConfig(max_failures)`` restarts a run whose worker died: the new workers resume from ``latest.json``.
  Running again with a larger ``--steps`` resumes a finished run (the cosine is then stretched to the new end).
  A resume with the same world size continues the data stream exactly where it stopped.
* **Metrics**: every ``log_every`` steps a progress line (rank 0) and a JSON line in ``<out>/metrics.jsonl``: loss
  per stream/codebook averaged over ranks, lr, grad norm, step time, frames/s and tokens/s (real frames × streams
  per frame: 2Q audio + text), and MFU when the device's peak is known. FLOPs per frame are
  ``AudioLM.flops_per_frame`` (PaLM's count: 6 × the matmul weights a frame multiplies + attention over the
  context), counted on every frame of a window (padding too, since it is computed); MFU = that × frames/s /
  (peak × workers). Validation (held-out split, ``val_every`` steps and at the end) reports ``val_<stream>``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

import storage
from codec.base import known_keys
from jobs.cluster import job_resources
from lm import checkpoint as ckpt
from lm.data import PackedStream, prefetch, probe, token_shards, tokens_root
from lm.evaluate import batch_of, finish, loss_sums

# bf16 dense peak FLOP/s per device, for MFU (substring of torch.cuda.get_device_name)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}


@dataclass
class LMTrainConfig:
    steps: int = 10_000
    batch_size: int = 8  # packed windows per worker per micro-step
    grad_accum: int = 1  # micro-steps per optimizer step
    lr: float = 3.0e-4
    min_lr_ratio: float = 0.1  # the cosine ends at lr × this
    warmup_steps: int = 200
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1  # on weight matrices only (not norms, biases, embeddings)
    grad_clip: float = 1.0
    seed: int = 0
    val_fraction: float = 0.05  # held-out samples (by sample-id hash; 7 of the demo's 214)
    val_every: int = 500
    val_batches: int = 8  # at most this many validation batches per worker
    ckpt_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    text: bool = False  # the inner-monologue text stream (needs tokenizer)
    tokenizer: str = ""  # tokenizer.model (or its folder) from `matalu lm tokenizer`
    bf16: bool = True  # autocast (DDP) / bf16 parameters (FSDP) on GPU
    fsdp: bool = False  # FSDP2 instead of DDP
    max_failures: int = 3  # Ray Train restarts after a worker dies
    prefetch: int = 4  # batches the loader thread keeps ready
    init: str = ""  # hf:DIR: start the temporal transformer from a local Hugging Face causal LM
    lora_rank: int = 0  # > 0: train low-rank adapters only
    peak_tflops: float = 0.0  # per device for MFU; 0: known GPUs' bf16 peak, none on CPU
    out: str = "data/lm"
    data: str = ""
    num_workers: int = 1
    use_gpu: bool = False
    threads_per_worker: int = 1  # torch threads (and Ray CPUs) per CPU worker
    storage: dict = field(default_factory=dict)  # StorageOptions fields (endpoint_url, region)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LMTrainConfig":
        kw = known_keys(cls, d, "LM train config")
        if "betas" in kw:
            kw["betas"] = tuple(float(b) for b in kw["betas"])
        return cls(**kw)

    @classmethod
    def preset(cls, size: str) -> "LMTrainConfig":
        """The training settings configs/lm-<size>.yaml lists (the defaults, with TRAIN_PRESETS[size] on top)."""
        return cls.from_dict(TRAIN_PRESETS.get(size, {}))


# What differs from the LMTrainConfig defaults per model size (configs/lm-<size>.yaml lists the result).
TRAIN_PRESETS: dict[str, dict] = {
    "tiny": {},
    "125m": {},
    "1b": {"fsdp": True, "batch_size": 4, "grad_accum": 2, "lr": 2.0e-4},  # FSDP2; same windows per step as 125m
}


def load_config(path: str | None) -> tuple[dict, LMTrainConfig]:
    """(the ``model:`` section as a dict, the ``train:`` section) of a configs/lm-*.yaml file."""
    if not path:
        return {}, LMTrainConfig()
    import yaml

    d = yaml.safe_load(storage.read_text(path)) or {}
    if not isinstance(d, dict) or not set(d) <= {"model", "train"}:
        raise ValueError(f"{path}: expected a mapping with a `model:` and a `train:` section")
    return dict(d.get("model") or {}), LMTrainConfig.from_dict(d.get("train") or {})


def model_config(model: dict, size: str | None, info, tok, init: str = ""):
    """The run's LMConfig: ``size``'s preset (or the config file's model section), with Q and K from the token
    shards, the text vocabulary from the tokenizer (none without the text stream), and with ``init`` (hf:DIR) the
    temporal transformer's shape from that Hugging Face folder's config.json."""
    from lm.config import LMConfig
    from lm.config import model_config as from_section

    base = (LMConfig.preset(size) if size else from_section(model)).to_dict()
    base.update(num_codebooks=info.num_codebooks, codebook_size=info.codebook_size)
    if tok is not None:
        base.update(text_vocab=tok.vocab_size, text_pad_id=tok.pad_id, text_epad_id=tok.epad_id)
    else:
        base.update(text_vocab=0)
    if base.get("delays") is not None and len(base["delays"]) != info.num_codebooks:
        raise ValueError(f"the config gives {len(base['delays'])} delays but the tokens have {info.num_codebooks} "
                         f"codebooks; remove `delays` or give one per codebook")
    cfg = LMConfig.from_dict(base)
    if init:
        from lm.hf_init import lm_config_from_hf, parse_init

        cfg = lm_config_from_hf(parse_init(init), cfg)
    return cfg


def lr_lambda(cfg: LMTrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(1, cfg.warmup_steps)
        p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def peak_flops(cfg: LMTrainConfig, device: torch.device) -> float | None:
    if cfg.peak_tflops > 0:
        return cfg.peak_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for k, v in PEAK_FLOPS.items():
            if k in name:
                return v
    return None


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


class LossOf(torch.nn.Module):
    """``forward(batch) = lm.loss(batch)``: the module DDP wraps, so the loss goes through DDP's forward."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, batch):
        return self.lm.loss(batch)


class MetricsLog:
    """``<out>/metrics.jsonl``: appended locally; on S3 the whole object is rewritten at each flush."""

    def __init__(self, out: str) -> None:
        self.uri = storage.join(out, "metrics.jsonl")
        self.lines: list[str] = []
        if not storage.is_local(self.uri) and storage.exists(self.uri):
            self.lines = storage.read_text(self.uri).splitlines()

    def write(self, m: dict) -> None:
        line = json.dumps(m, sort_keys=True)
        if storage.is_local(self.uri):
            p = storage.local_path(self.uri)
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        else:
            self.lines.append(line)
            storage.write_text(self.uri, "\n".join(self.lines) + "\n")


def progress_line(m: dict, steps: int) -> str:
    parts = [f"[lm] step {m['step']}/{steps}", f"loss {m['loss']:.4f}"]
    per = " ".join(f"{k.replace('audio_', '')} {m[k]:.3f}" for k in sorted(m) if k.startswith("audio_cb"))
    if "text" in m:
        per += f" text {m['text']:.3f}"
    parts.append(f"({per})")
    parts.append(f"{m['tokens_per_s']:.0f} tok/s")
    if m.get("mfu") is not None:
        parts.append(f"MFU {100 * m['mfu']:.1f}%")
    parts.append(f"lr {m['lr']:.2e}")
    parts.append(f"{m['step_s']:.3f} s/step")
    if "val_loss" in m:
        parts.append(f"val {m['val_loss']:.4f}")
    return " | ".join(parts)


@dataclass
class TrainResult:
    step: int
    resumed_from: int
    history: list[dict]
    checkpoint: str = ""
    model: torch.nn.Module | None = None


def _dist() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    if _dist():
        torch.distributed.all_reduce(t, op=op or torch.distributed.ReduceOp.SUM)
    return t


def _gather(obj) -> list:
    if not _dist():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def _shard_fsdp(lm: torch.nn.Module, device: torch.device, bf16: bool) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kw = {}
    if bf16 and device.type == "cuda":
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for stack in (lm.temporal, lm.depth):
        for blk in stack.layers:
            fully_shard(blk, **kw)
    fully_shard(lm, **kw)


def _loop(mdict: dict, size: str | None, cfg: LMTrainConfig, *, rank: int, world: int, device: torch.device,
          wrap: Callable[[torch.nn.Module], torch.nn.Module], report: Callable[[dict, str], None],
          say: Callable[[str], None], stop_at: int | None = None) -> TrainResult:
    """The training loop of one worker. ``stop_at``: checkpoint and stop at that step as if interrupted (the
    schedule still runs to ``cfg.steps``)."""
    from lm.model import AudioLM
    from lm.text import TextAligner, TextTokenizer

    storage.configure(cfg.storage or None)
    if cfg.text and not cfg.tokenizer:
        raise ValueError("the text stream needs a tokenizer: `matalu lm tokenizer --data URI --out DIR`, then "
                         "train with --tokenizer DIR (or text: false)")
    shards = token_shards(cfg.data)
    info = probe(shards)
    tok = TextTokenizer.load(cfg.tokenizer) if cfg.text else None
    mcfg = model_config(mdict, size, info, tok, cfg.init)
    ck = ckpt.load(cfg.out)
    if ck is not None and ck.meta.get("model") != mcfg.to_dict():
        raise ValueError(f"{cfg.out} holds a checkpoint of another model config (size, data's Q/K or tokenizer); "
                         f"use a new --out")
    start = ck.step if ck is not None else 0
    if start >= cfg.steps:
        say(f"[lm] {cfg.out} is at step {start} already (>= --steps {cfg.steps}): nothing to do")
        return TrainResult(start, start, [], ck.uri if ck else "")

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    lm = AudioLM(mcfg)
    if cfg.init and ck is None:
        from lm.hf_init import init_from_hf, parse_init

        rep = init_from_hf(lm, parse_init(cfg.init))
        say(f"[lm] initialised from {cfg.init}: {rep['model_type']}, {rep['layers']} layers, text {rep['text']}, "
            f"fresh: {', '.join(rep['fresh'])}")
    if cfg.lora_rank:
        from lm.lora import apply_lora

        # after --init the audio embeddings and the depth transformer are fresh: they train in full, the
        # pretrained temporal transformer through its adapters only
        n = apply_lora(lm, cfg.lora_rank, train_fresh=bool(cfg.init))
        say(f"[lm] LoRA rank {cfg.lora_rank} on {n} temporal layers{' (fresh audio parts train in full)' if cfg.init else ''}; "
            f"{sum(p.numel() for p in lm.parameters() if p.requires_grad):,} trainable parameters")
    if ck is not None:
        lm.load_state_dict(ck.model)
    lm.to(device).train()
    if cfg.fsdp and world > 1:
        _shard_fsdp(lm, device, cfg.bf16)
        net = LossOf(lm)
    else:
        net = wrap(LossOf(lm))
    params = [p for p in lm.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2 and not _is_embedding(lm, p)]
    ids = {id(p) for p in decay}
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if id(p) not in ids], "weight_decay": 0.0}]
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    if ck is not None:
        if cfg.fsdp and world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(lm, opt, ck.optimizer, options=StateDictOptions(full_state_dict=True))
        elif ck.optimizer is not None:
            opt.load_state_dict(ck.optimizer)
        sched.load_state_dict(ck.state["scheduler"])
        f = lr_lambda(cfg)  # a run extended by --steps continues on the stretched cosine
        for g, base in zip(opt.param_groups, sched.base_lrs):
            g["lr"] = base * f(sched.last_epoch)
        sched._last_lr = [g["lr"] for g in opt.param_groups]  # noqa: SLF001 - what get_last_lr() reports

    aligner = TextAligner(tok, info.frame_rate) if tok is not None else None
    text_pad = tok.pad_id if tok is not None else 0
    loader = PackedStream(shards, info, context=mcfg.context, batch_size=cfg.batch_size,
                          silence_code=mcfg.user_silence_id, seed=cfg.seed, rank=rank, world=world, split="train",
                          val_fraction=cfg.val_fraction, loop=True, text=aligner, text_pad=text_pad)
    if ck is not None:
        states = ck.state.get("loader", [])
        if len(states) == world:
            loader.load_state_dict(states[rank])
            set_rng_state(ck.state["rng"][rank])
        else:
            loader.pos["epoch"] = 1 + max((s.get("epoch", 0) for s in states), default=0)
            say(f"[lm] checkpoint of {len(states)} workers, now {world}: the data stream restarts at epoch "
                f"{loader.pos['epoch']} (not an exact resume)")
    root = tokens_root(cfg.data)
    if rank == 0 and ck is None:
        from lm.lineage import lineage

        storage.write_text(storage.join(cfg.out, "lineage.json"),
                           json.dumps(lineage(root, shards, info.codec_id), indent=2, sort_keys=True) + "\n")
    lineage_doc = json.loads(storage.read_text(storage.join(cfg.out, "lineage.json"))) \
        if storage.exists(storage.join(cfg.out, "lineage.json")) else {}
    log = MetricsLog(cfg.out) if rank == 0 else None
    if ck is not None:
        say(f"[lm] resumed from {ck.uri} (step {start})")

    use_bf16 = cfg.bf16 and device.type == "cuda" and not (cfg.fsdp and world > 1)
    peak = peak_flops(cfg, device)
    flops_frame = lm.flops_per_frame()
    streams_per_frame = 2 * mcfg.Q + (1 if tok is not None else 0)
    batches = prefetch(iter(loader), cfg.prefetch)
    history: list[dict] = []
    saved_uri = ""
    step = start
    acc: dict[str, list[float]] = {}
    frames_done = real_done = 0
    t_log = time.perf_counter()
    steps_since = 0
    gnorm = torch.zeros((), device=device)
    last_state = loader.state_dict()
    end = min(cfg.steps, stop_at or cfg.steps)
    while step < end:
        opt.zero_grad(set_to_none=True)
        for micro in range(cfg.grad_accum):
            b = next(batches)
            last_state = b.state
            sync = micro == cfg.grad_accum - 1
            _set_sync(net, lm, sync, cfg.fsdp and world > 1)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = net(batch_of(b, device))
            (out.total / cfg.grad_accum).backward()
            for k, v in out.per_stream.items():
                a = acc.setdefault(k, [0.0, 0.0])
                n = float(out.counts.get(k, 1))
                a[0] += float(v) * n
                a[1] += n
            frames_done += b.codes.shape[0] * b.codes.shape[2]
            real_done += b.real_frames
        if cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        steps_since += 1
        do_val = cfg.val_fraction > 0 and cfg.val_every > 0 and (step % cfg.val_every == 0 or step == cfg.steps)
        do_ckpt = step % cfg.ckpt_every == 0 or step == end
        do_log = step % cfg.log_every == 0 or step == end or do_ckpt or do_val
        if not do_log:
            continue
        t = torch.tensor([v for a in acc.values() for v in a] + [frames_done, real_done], dtype=torch.float64,
                         device=device)
        _all_reduce(t)
        vals = t.tolist()
        now = time.perf_counter()
        dt = (now - t_log) / steps_since
        g = gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm  # FSDP2: a DTensor
        m: dict = {"step": step, "lr": sched.get_last_lr()[0], "grad_norm": float(g), "step_s": dt}
        for i, k in enumerate(acc):
            m[k] = vals[2 * i] / max(vals[2 * i + 1], 1.0)
        m["loss"] = m.get("audio", 0.0) + m.get("text", 0.0)
        frames_s, real_s = vals[-2] / (now - t_log), vals[-1] / (now - t_log)
        m.update({"frames_per_s": frames_s, "tokens_per_s": real_s * streams_per_frame,
                  "mfu": frames_s * flops_frame / (peak * world) if peak else None,
                  "padding_fraction": 1.0 - vals[-1] / max(vals[-2], 1.0), "epoch": last_state["epoch"],
                  "resumed_from": start})
        if do_val:
            m.update(_validate(net, lm, shards, info, mcfg, cfg, rank, world, device, aligner, text_pad, use_bf16))
        acc, frames_done, real_done, steps_since = {}, 0, 0, 0
        if not math.isfinite(m["loss"]):
            raise FloatingPointError(f"LM training diverged at step {step}: loss {m['loss']}")
        saved = ""
        if do_ckpt:
            saved = saved_uri = _save(lm, opt, sched, loader, last_state, step, mcfg, cfg, tok, lineage_doc, m,
                                      rank, world)
        if rank == 0:
            if aligner is not None:
                m["text_alignment"] = dict(aligner.counts)
            log.write(m)
            say(progress_line(m, cfg.steps))
        history.append(m)
        report(m, saved)
        t_log = time.perf_counter()
    lm.eval()
    return TrainResult(step, start, history, saved_uri, lm)


def _is_embedding(lm: torch.nn.Module, p: torch.Tensor) -> bool:
    for mod in lm.modules():
        if isinstance(mod, torch.nn.Embedding) and mod.weight is p:
            return True
    return False


def _set_sync(net, lm, sync: bool, fsdp: bool) -> None:
    if fsdp:
        lm.set_requires_gradient_sync(sync)
    elif isinstance(net, torch.nn.parallel.DistributedDataParallel):
        net.require_backward_grad_sync = sync


def _validate(net, lm, shards, info, mcfg, cfg, rank, world, device, aligner, text_pad, use_bf16) -> dict:
    """Validation loss per stream over the held-out split: every rank runs the same number of forwards (ranks with
    fewer batches run empty ones whose mask is all False), then the sums are all-reduced."""
    import itertools

    stream = PackedStream(shards, info, context=mcfg.context, batch_size=cfg.batch_size,
                          silence_code=mcfg.user_silence_id, seed=cfg.seed, rank=rank, world=world, split="val",
                          val_fraction=cfg.val_fraction, loop=False, text=aligner, text_pad=text_pad)
    mine = list(itertools.islice(iter(stream), cfg.val_batches))
    n = _all_reduce(torch.tensor([len(mine)], device=device), torch.distributed.ReduceOp.MAX if _dist() else None)
    n = int(n.item())
    if n == 0:
        return {}
    while len(mine) < n:  # an empty batch: real shapes, nothing counted
        proto = mine[0] if mine else None
        from lm.data import Batch

        if proto is None:
            C, Q2 = mcfg.context, 2 * mcfg.Q
            codes = torch.zeros(1, Q2, C, dtype=torch.long)
            text = torch.full((1, C), text_pad, dtype=torch.long) if aligner is not None else None
            proto = Batch(codes, text, torch.zeros(1, C, dtype=torch.bool), {})
        mine.append(Batch(proto.codes, proto.text, torch.zeros_like(proto.mask), {}))
    was = lm.training
    lm.eval()
    try:
        sums = loss_sums(net, mine, device, bf16=use_bf16)
    finally:
        lm.train(was)
    keys = sorted(sums)
    t = torch.tensor([v for k in keys for v in sums[k]], dtype=torch.float64, device=device)
    _all_reduce(t)
    res = finish({k: [t[2 * i].item(), t[2 * i + 1].item()] for i, k in enumerate(keys)})
    out = {f"val_{k}": v["loss"] for k, v in res.items()}
    out["val_loss"] = out.get("val_audio", 0.0) + out.get("val_text", 0.0)
    return out


def _save(lm, opt, sched, loader, last_state, step, mcfg, cfg, tok, lineage_doc, m, rank, world) -> str:
    """Gather what every rank holds (loader positions, RNG; FSDP shards), rank 0 writes. Returns the folder."""
    states = _gather(last_state)
    rngs = _gather(rng_state())
    if cfg.fsdp and world > 1:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        msd = get_model_state_dict(lm, options=opts)
        osd = get_optimizer_state_dict(lm, opt, options=opts)
    else:
        msd = {k: v.detach().cpu() for k, v in lm.state_dict().items()} if rank == 0 else None
        osd = opt.state_dict() if rank == 0 else None
    uri = ""
    if rank == 0:
        meta = {"model": mcfg.to_dict(), "train": cfg.to_dict(), "lineage": lineage_doc, "world": world,
                "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) or v is None}}
        uri = ckpt.save(cfg.out, step, model=msd, optimizer=osd,
                        state={"step": step, "scheduler": sched.state_dict(), "loader": states, "rng": rngs},
                        meta=meta, tokenizer=tok.model_bytes if tok is not None else None, keep=cfg.keep_checkpoints)
    if _dist():
        torch.distributed.barrier()
    return uri


# -- entry points ---------------------------------------------------------------------------------------------
def train_local(model: dict, size: str | None, cfg: LMTrainConfig, *, device: str | None = None,
                say: Callable[[str], None] = print, stop_at: int | None = None) -> TrainResult:
    """The loop in this process (one worker, no Ray); ``stop_at``: stop (checkpointed) there as if interrupted."""
    dev = torch.device(device or ("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"))
    _write_run_config(model, size, cfg)
    return _loop(model, size, cfg, rank=0, world=1, device=dev, wrap=lambda m: m, report=lambda m, s: None, say=say,
                 stop_at=stop_at)


def _write_run_config(model: dict, size: str | None, cfg: LMTrainConfig) -> None:
    storage.write_text(storage.join(cfg.out, "config.json"),
                       json.dumps({"size": size, "model": model, "train": cfg.to_dict()}, indent=2) + "\n")


def _ray_worker(config: dict) -> None:
    import ray.train.torch

    from jobs.train import report_step, worker_context

    cfg = LMTrainConfig.from_dict(config["cfg"])
    rank, world, device = worker_context(cfg.threads_per_worker)

    def report(m: dict, saved: str) -> None:
        report_step(m, saved, rank)

    def say(s: str) -> None:
        if rank == 0:
            print(s, flush=True)

    _loop(config["model"], config["size"], cfg, rank=rank, world=world, device=device,
          wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=False), report=report, say=say)


def _spawned_worker(rank: int, world: int, port: int, model: dict, size: str | None, cfg_dict: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cfg = LMTrainConfig.from_dict(cfg_dict)
    dist.init_process_group("nccl" if cfg.use_gpu else "gloo", rank=rank, world_size=world)
    device = torch.device("cuda", rank) if cfg.use_gpu else torch.device("cpu")
    if cfg.use_gpu:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, cfg.threads_per_worker))

    def wrap(m: torch.nn.Module) -> torch.nn.Module:
        return torch.nn.parallel.DistributedDataParallel(m, device_ids=[rank] if cfg.use_gpu else None)

    try:
        _loop(model, size, cfg, rank=rank, world=world, device=device, wrap=wrap, report=lambda m, s: None,
              say=lambda s: None)
    finally:
        dist.destroy_process_group()


def train_spawn(model: dict, size: str | None, cfg: LMTrainConfig, workers: int) -> None:
    """The same loop on ``workers`` processes of this machine started by ``torch.multiprocessing`` with
    ``init_process_group`` by hand (no Ray): the baseline ``benchmarks/lm.py`` compares Ray Train against."""
    import socket

    import torch.multiprocessing as mp

    _write_run_config(model, size, cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_spawned_worker, args=(workers, port, model, size, cfg.to_dict()), nprocs=workers, join=True)


def train_ray(model: dict, size: str | None, cfg: LMTrainConfig, *, name: str | None = None):
    """Ray Train ``TorchTrainer`` over ``cfg.num_workers`` workers. Returns the Ray Train ``Result`` (its metrics
    and checkpoint are those of the last saved step; the final step always saves)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    _write_run_config(model, size, cfg)
    storage_path, fs = storage.join(cfg.out, "ray"), None
    if storage.is_local(cfg.out):
        storage_path = str(storage.local_path(storage_path).resolve())
    elif storage.current_options().endpoint_url or cfg.storage.get("endpoint_url"):
        import pyarrow.fs

        storage_path = storage_path[len("s3://"):]
        fs = pyarrow.fs.S3FileSystem(endpoint_override=cfg.storage.get("endpoint_url")
                                     or storage.current_options().endpoint_url)
    cpus = 0 if cfg.use_gpu else max(1, cfg.threads_per_worker)
    resources = {**({"CPU": cpus} if cpus else {}), **job_resources()}  # + cluster.yaml's node type, when submitted
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"cfg": cfg.to_dict(), "model": model, "size": size},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=resources or None),
        run_config=ray.train.RunConfig(
            name=name or f"lm-{int(time.time())}-{os.getpid()}", storage_path=storage_path, storage_filesystem=fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=max(1, cfg.keep_checkpoints)),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures)),
    )
    return trainer.fit()

