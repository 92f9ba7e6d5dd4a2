"""Codec training: reconstruction losses, Adam, checkpoint/resume to a storage URI; on Ray Train or in-process.

``matalu codec train --config FILE --data SEGMENTS_URI [--num-workers N] [--gpu] [--steps N] [--out URI]``
runs :func:`train_ray` (Ray Train ``TorchTrainer``: DDP across workers, bf16 autocast on GPU, metrics of every
step through ``ray.train.report``). :func:`train_local` is the same loop in this process (tests, quick runs).

Data: the ``mono`` samples of segment shards (``<data>/**/*.tar``, FLAC + JSON), random crops of ``segment_s``
seconds drawn from a shuffled pool of clips (``dialog`` windows too, one channel per clip, when ``use_dialog``).
Shards are split across ranks (samples are, when there are fewer shards than ranks).

Adversarial (``adversarial: true``): from step ``disc_start`` on, each step adds the generator hinge and feature
matching losses of a multi-scale STFT discriminator (codec/discriminators.py) to the reconstruction loss, then takes
one discriminator step on real vs the detached reconstruction (its own Adam, ``disc_lr``); the discriminator is
wrapped for DDP like the codec and saved in the checkpoint.

Checkpoints (rank 0 writes; every rank reads on resume)::

    <out>/config.json                            the training config (JSON)
    <out>/checkpoints/step-0000100/codec.pt      {"config", "model", "optimizer", "step", "codec_id", "train_config"}
                                                 (+ "discriminator", "disc_optimizer" when adversarial)
    <out>/checkpoints/step-0000100/config.json   codec + training config and codec_id, beside the weights
    <out>/checkpoints/latest.json                {"step", "uri", "codec_id"}: written last, read on resume
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

import storage
from codec.base import known_keys
from codec.discriminators import (
    MultiScaleSTFTDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    split_batch,
)
from codec.losses import CodecLoss, LossWeights
from codec.model import CodecConfig, CodecModel
from storage.audio import read_sample
from storage.shards import segment_shards


@dataclass
class CodecTrainConfig:
    size: str = "base"  # CodecConfig preset: tiny | base
    model: dict = field(default_factory=dict)  # CodecConfig overrides, e.g. {"strides": [4, 5, 4, 4, 2]} (25 Hz base)
    steps: int = 100_000
    batch_size: int = 16  # per worker
    segment_s: float = 1.0
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    pool_size: int = 256  # clips held for random crops
    use_dialog: bool = False
    bf16: bool = True  # autocast on GPU
    out: str = "data/codec"
    data: str = ""
    num_workers: int = 1
    use_gpu: bool = False
    storage: dict = field(default_factory=dict)  # StorageOptions fields (endpoint_url, region)
    # adversarial training (optional): EnCodec's multi-scale STFT discriminator, hinge + feature-matching losses
    adversarial: bool = False
    disc_channels: int = 32
    disc_start: int = 0  # first step with adversarial losses (reconstruction-only warm-up before it)
    disc_lr: float = 3e-4

    def codec_config(self) -> CodecConfig:
        return CodecConfig.preset(self.size, **self.model)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecTrainConfig":
        kw = known_keys(cls, d, "codec train config")
        if isinstance(kw.get("loss"), dict):
            kw["loss"] = LossWeights(**kw["loss"])
        if "betas" in kw:
            kw["betas"] = tuple(float(b) for b in kw["betas"])
        return cls(**kw)


def load_train_config(path: str | None) -> CodecTrainConfig:
    if not path:
        return CodecTrainConfig()
    import yaml

    text = storage.read_text(path)
    d = yaml.safe_load(text) or {}  # YAML is a superset of JSON
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping of codec train settings")
    return CodecTrainConfig.from_dict(d)


# -- data -----------------------------------------------------------------------------------------------------
class CropStream:
    """Endless batches ``[B, 1, segment]`` of random crops from the clips of segment shards."""

    def __init__(self, shards: list[str], segment_samples: int, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world: int = 1, pool_size: int = 256, use_dialog: bool = False) -> None:
        self.shards, self.segment, self.batch_size = list(shards), segment_samples, batch_size
        self.seed, self.rank, self.world, self.pool_size, self.use_dialog = seed, rank, world, pool_size, use_dialog

    def clips(self) -> Iterator[np.ndarray]:
        by_shard = len(self.shards) >= self.world
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
            n_out, k = 0, 0
            for i, j in enumerate(order):
                if by_shard and i % self.world != self.rank:
                    continue
                for _key, members in storage.iter_shard(self.shards[j]):
                    k += 1
                    if not by_shard and (k - 1) % self.world != self.rank:
                        continue
                    meta, audio = read_sample(members)
                    kind = meta.get("kind", "mono")
                    if kind != "mono" and not (self.use_dialog and kind == "dialog"):
                        continue
                    chans = [audio[0]] if kind == "mono" else list(audio)
                    for ch in chans:
                        if np.abs(ch).max(initial=0) > 1e-4:
                            n_out += 1
                            yield ch
            if n_out == 0:
                kinds = "mono or dialog" if self.use_dialog else "mono"
                raise ValueError(f"no {kinds} samples for rank {self.rank} in {len(self.shards)} shard(s)")
            epoch += 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1_000_003, self.rank])
        clips = self.clips()
        pool = [next(clips) for _ in range(min(self.pool_size, 8))]
        while True:
            out = np.zeros((self.batch_size, 1, self.segment), np.float32)
            for b in range(self.batch_size):
                c = next(clips)
                if len(pool) < self.pool_size:
                    pool.append(c)
                else:
                    pool[rng.integers(len(pool))] = c
                clip = pool[rng.integers(len(pool))]
                if len(clip) <= self.segment:
                    out[b, 0, : len(clip)] = clip
                else:
                    s = rng.integers(0, len(clip) - self.segment + 1)
                    out[b, 0] = clip[s : s + self.segment]
            yield torch.from_numpy(out)


# -- checkpoints ----------------------------------------------------------------------------------------------
def latest_uri(out: str) -> str:
    return storage.join(out, "checkpoints", "latest.json")


def save_checkpoint(out: str, model: CodecModel, opt: torch.optim.Optimizer | None, step: int,
                    cfg: CodecTrainConfig, extra: dict | None = None) -> str:
    """``extra``: more entries of ``codec.pt`` (the discriminator and its optimizer when adversarial)."""
    ck = model.checkpoint()
    ck.update({"optimizer": opt.state_dict() if opt is not None else None, "step": step, "train_config": cfg.to_dict()})
    ck.update(extra or {})
    d = storage.join(out, "checkpoints", f"step-{step:07d}")
    buf = io.BytesIO()
    torch.save(ck, buf)
    uri = storage.join(d, "codec.pt")
    storage.write_bytes(uri, buf.getvalue())
    storage.write_text(storage.join(d, "config.json"), json.dumps(
        {"codec_id": ck["codec_id"], "step": step, "codec": ck["config"], "train": cfg.to_dict()}, indent=2) + "\n")
    prev = None
    if storage.exists(latest_uri(out)):
        prev = json.loads(storage.read_text(latest_uri(out)))
    storage.write_text(latest_uri(out), json.dumps({"step": step, "uri": uri, "codec_id": ck["codec_id"]}) + "\n")
    _prune(out, cfg.keep_checkpoints, keep={uri, (prev or {}).get("uri")})
    return uri


def _prune(out: str, keep_n: int, keep: set) -> None:
    if keep_n <= 0:
        return
    files = [f for f in storage.list_files(storage.join(out, "checkpoints"), "codec.pt")]
    for f in files[:-keep_n]:
        if f not in keep:
            storage.remove(f)
            storage.remove(f.rsplit("/", 1)[0] + "/config.json")


def load_latest(out: str) -> dict | None:
    if not storage.exists(latest_uri(out)):
        return None
    info = json.loads(storage.read_text(latest_uri(out)))
    return torch.load(io.BytesIO(storage.read_bytes(info["uri"])), map_location="cpu", weights_only=True)


# -- the loop -------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model: CodecModel
    step: int
    history: list[dict]
    checkpoint: str = ""
    resumed_from: int = 0


def _loop(cfg: CodecTrainConfig, data_uri: str, steps: int, *, rank: int, world: int, device: torch.device,
          wrap: Callable[[torch.nn.Module], torch.nn.Module], report: Callable[[dict, str], None],
          out: str | None) -> TrainResult:
    storage.configure(cfg.storage or None)
    torch.manual_seed(cfg.seed + rank)
    ccfg = cfg.codec_config()
    model = CodecModel(ccfg)
    ck = load_latest(out) if out else None
    start = 0
    if ck is not None:
        if CodecConfig.from_dict(ck["config"]) != ccfg:
            raise ValueError(f"{out} holds a checkpoint of another codec config; use a new --out")
        model.load_state_dict(ck["model"])
        start = int(ck["step"])
    model.to(device).train()
    net = wrap(model)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if ck is not None and ck.get("optimizer"):
        opt.load_state_dict(ck["optimizer"])
    loss_fn = CodecLoss(ccfg.sample_rate, cfg.loss).to(device)
    disc, dnet, dopt = None, None, None
    if cfg.adversarial:
        disc = MultiScaleSTFTDiscriminator(channels=cfg.disc_channels)
        if ck is not None and ck.get("discriminator"):
            disc.load_state_dict(ck["discriminator"])
        disc.to(device).train()
        dnet = wrap(disc)
        dopt = torch.optim.Adam(dnet.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        if ck is not None and ck.get("disc_optimizer"):
            dopt.load_state_dict(ck["disc_optimizer"])
    shards = segment_shards(data_uri)
    # a resumed run draws other crops than the first run did (seeded by the start step)
    stream = iter(CropStream(shards, int(round(cfg.segment_s * ccfg.sample_rate)), cfg.batch_size,
                             seed=cfg.seed + 7919 * start, rank=rank, world=world, pool_size=cfg.pool_size,
                             use_dialog=cfg.use_dialog))
    use_bf16 = cfg.bf16 and device.type == "cuda"
    history: list[dict] = []
    ckpt = ""
    step = start
    t_prev = time.perf_counter()
    while step < steps:
        batch = next(stream).to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            y, codes, commit = net(batch)
        loss, m = loss_fn(y, batch, commit)
        adv_on = dnet is not None and step >= cfg.disc_start
        if adv_on:  # the codec's adversarial + feature-matching terms (one discriminator pass over real ‖ fake)
            y = y[..., : batch.shape[-1]]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                (_, f_real), (l_fake, f_fake) = split_batch(*dnet(torch.cat([batch, y])), batch.shape[0])
            g_adv, feat = generator_adv_loss(l_fake), feature_matching_loss(f_real, f_fake)
            loss = loss + cfg.loss.adv * g_adv + cfg.loss.feat * feat
            m.update({"loss": loss.item(), "adv": g_adv.item(), "feat": feat.item()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else torch.zeros(())
        opt.step()
        if adv_on:  # the discriminator's hinge step on real vs the (detached) reconstruction
            dopt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                (l_real, _), (l_fake, _) = split_batch(*dnet(torch.cat([batch, y.detach()])), batch.shape[0])
            d_loss = discriminator_loss(l_real, l_fake)
            d_loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(dnet.parameters(), cfg.grad_clip)
            dopt.step()
            m["disc"] = d_loss.item()
        step += 1
        now = time.perf_counter()
        m.update({"step": step, "grad_norm": float(gn), "step_s": now - t_prev,
                  "audio_s_per_s": cfg.batch_size * world * cfg.segment_s / max(now - t_prev, 1e-9)})
        t_prev = now
        if not math.isfinite(m["loss"]):
            raise FloatingPointError(f"codec training diverged at step {step}: loss {m['loss']}")
        history.append(m)
        saved = ""
        if out and rank == 0 and (step % cfg.ckpt_every == 0 or step == steps):
            extra = {"discriminator": disc.state_dict(), "disc_optimizer": dopt.state_dict()} if disc is not None else None
            ckpt = saved = save_checkpoint(out, model, opt, step, cfg, extra)
        report(m, saved)
    model.eval()
    return TrainResult(model, step, history, ckpt, start)


def train_local(cfg: CodecTrainConfig, data_uri: str, steps: int, *, out: str | None = None,
                device: str | None = None, log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train in this process (one worker). ``out``: checkpoint/resume URI (None: no checkpoints)."""
    dev = torch.device(device or ("cuda" if cfg.use_gpu and torch.cuda.is_available() else "cpu"))
    if out:
        storage.write_text(storage.join(out, "config.json"), json.dumps(cfg.to_dict(), indent=2) + "\n")
    return _loop(cfg, data_uri, steps, rank=0, world=1, device=dev, wrap=lambda m: m,
                 report=lambda m, _ckpt: log(m) if log else None, out=out)


def _ray_worker(config: dict) -> None:
    import ray.train.torch

    from jobs.train import report_step, worker_context

    cfg = CodecTrainConfig.from_dict(config["cfg"])
    rank, world, device = worker_context(int(config.get("threads", 1)))

    def report(m: dict, saved: str) -> None:
        report_step(m, saved, rank)

    _loop(cfg, config["data"], int(config["steps"]), rank=rank, world=world, device=device,
          wrap=lambda m: ray.train.torch.prepare_model(m, move_to_device=False), report=report, out=config["out"])


def train_ray(cfg: CodecTrainConfig, data_uri: str, steps: int, out: str, *, num_workers: int = 1,
              use_gpu: bool = False, storage_path: str | None = None, threads_per_worker: int = 1):
    """Ray Train ``TorchTrainer`` over ``num_workers`` workers (DDP; gloo on CPU, nccl on GPU).

    Returns the Ray Train ``Result``: its metrics and checkpoint are those of the last saved step (the final step
    always saves); every step's metrics went through ``ray.train.report``."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from jobs.cluster import job_resources

    storage.write_text(storage.join(out, "config.json"), json.dumps(cfg.to_dict(), indent=2) + "\n")
    if storage_path is None and storage.is_local(out):
        storage_path = str(Path(storage.local_path(out)).resolve() / "ray")
    trainer = TorchTrainer(
        _ray_worker,
        train_loop_config={"cfg": cfg.to_dict(), "data": data_uri, "steps": steps, "out": out,
                           "threads": threads_per_worker},
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": threads_per_worker, **job_resources()}),
        # a worker that dies (lost node) restarts the group, which resumes from the latest checkpoint in `out`
        run_config=ray.train.RunConfig(name=f"codec-{int(time.time())}", storage_path=storage_path,
                                       failure_config=ray.train.FailureConfig(max_failures=3)),
    )
    return trainer.fit()
