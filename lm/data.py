"""The audio LM's loader: token shards -> packed fixed-length context windows, one stream per rank.

Input: token shards written by ``matalu encode`` (``<out>/tokens/<codec_id>/<source>/<kind>/*.tar``, each sample a
``<key>.codes.npy`` int16 ``[channels × Q, frames]`` + ``<key>.json``), local or ``s3://``. ``--data`` may name the
encode output (its single ``tokens/<codec_id>/`` folder is used), the tokens folder itself, or any folder of token
shards. Frame rate, Q and K are read from the shards' JSON and must agree across samples.

Per sample, the model's streams (``[2Q, frames]``, rows ``0..Q-1`` system, ``Q..2Q-1`` user):

* ``dialog`` samples use both channels as they are (channel 0 = system, channel 1 = user);
* ``mono`` samples are system speech: the user rows are the model's silence code (``silence_code``, from the model
  config), as if the user listened silently.

**Split.** A sample is in the validation split when ``sha256(sample_id)`` falls under ``val_fraction`` (the same
samples are held out on every run, rank count and machine); the train stream never yields them.

**Order.** Epoch ``e`` permutes the shard list with ``rng(seed, e)``; rank ``r`` of ``w`` reads shards ``r, r+w, …``
of that order (when there are fewer shards than ranks every rank reads every shard and keeps every ``w``-th sample).
Inside a shard the samples are permuted with ``rng(seed, e, shard)``. Nothing else is random, so a position in the
stream is four numbers (epoch, shard, sample, frame offset) and is restored exactly.

**Packing.** Samples are laid end to end into windows of ``context`` frames; a sample longer than the room left
continues in the next window, so a short dialog is never padded to the window. The train stream never ends (epochs
follow each other), so every rank yields a batch at every step however uneven its shards are: DDP cannot hang on a
short rank. Finite passes (validation, ``lm eval``) pad their last window; ``mask`` is False on padding and
:attr:`PackedStream.stats` counts real and padded frames (the padding fraction).

Why a plain iterator and not Ray Data: see ``benchmarks/lm.py`` (the loader keeps far ahead of training on one
thread, and its position is a small dict, which ``streaming_split`` does not give back for exact resume).
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

import storage

TextFn = Callable[[dict, int], np.ndarray]  # (sample JSON, frames) -> int64 [frames] text ids on the system's frames


def tokens_root(uri: str) -> str:
    """The token shard folder behind ``uri`` (an encode output with one ``tokens/<codec_id>/``, or a folder of shards)."""
    tok = storage.join(uri, "tokens")
    files = [f for f in storage.list_files(tok, ".tar") if "/manifests/" not in f]
    if files:
        ids = sorted({f[len(tok) + 1:].split("/", 1)[0] for f in files})
        if len(ids) > 1:
            raise ValueError(f"{uri} holds tokens of {len(ids)} codecs ({', '.join(ids)}); "
                             f"pass one of them: --data {tok}/<codec_id>")
        return storage.join(tok, ids[0])
    return uri


def token_shards(uri: str) -> list[str]:
    """Token shard URIs (sorted) under ``uri``; a clear error when there are none."""
    root = tokens_root(uri)
    files = [f for f in storage.list_files(root, ".tar") if "/manifests/" not in f[len(root):]]
    if not files:
        raise FileNotFoundError(f"no token shards (*.tar) under {uri}; make them with "
                                f"`matalu encode --segments INGEST_OUT --codec CODEC --out {uri}`")
    return files


@dataclass(frozen=True)
class TokenInfo:
    """What the shards say about their codec (the model is sized from it)."""

    codec_id: str
    frame_rate: float
    num_codebooks: int
    codebook_size: int


def info_of(meta: dict, where: str = "") -> TokenInfo:
    try:
        return TokenInfo(str(meta.get("codec_id", "")), float(meta["frame_rate"]), int(meta["num_codebooks"]),
                         int(meta["codebook_size"]))
    except KeyError as e:
        raise ValueError(f"{where}: token sample JSON has no {e.args[0]!r}; re-encode with `matalu encode`") from e


def probe(shards: list[str]) -> TokenInfo:
    """The codec facts of the first sample of the first non-empty shard."""
    for uri in shards:
        for key, members in storage.iter_shard(uri):
            return info_of(json.loads(members["json"]), f"{uri}:{key}")
    raise ValueError(f"the {len(shards)} token shard(s) hold no samples")


def is_val(sample_id: str, fraction: float) -> bool:
    """The held-out split: a fixed function of the sample id (same on every run and rank)."""
    if fraction <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "big")
    return h / 2.0**64 < fraction


def sample_streams(key: str, members: dict[str, bytes], info: TokenInfo, silence_code: int) -> tuple[np.ndarray, dict]:
    """(int64 ``[2Q, frames]`` system rows then user rows, the sample JSON) of one token sample."""
    if "codes.npy" not in members or "json" not in members:
        raise ValueError(f"token sample {key} lacks codes.npy or json (members: {sorted(members)})")
    meta = json.loads(members["json"])
    got = info_of(meta, key)
    if (got.num_codebooks, got.codebook_size, got.frame_rate) != (info.num_codebooks, info.codebook_size, info.frame_rate):
        raise ValueError(f"token sample {key} has Q={got.num_codebooks}, K={got.codebook_size}, {got.frame_rate} Hz but "
                         f"the run has Q={info.num_codebooks}, K={info.codebook_size}, {info.frame_rate} Hz; "
                         f"train on the tokens of one codec")
    codes = np.load(io.BytesIO(members["codes.npy"]), allow_pickle=False).astype(np.int64)
    Q = info.num_codebooks
    kind = meta.get("kind", "mono")
    if kind == "dialog" and codes.shape[0] == 2 * Q:
        return codes, meta
    if kind == "mono" and codes.shape[0] == Q:
        user = np.full_like(codes, silence_code)
        return np.concatenate([codes, user], 0), meta
    raise ValueError(f"token sample {key}: kind {kind!r} with codes of shape {tuple(codes.shape)} (Q={Q}); "
                     f"expected [{Q}, frames] for mono or [{2 * Q}, frames] for dialog")


@dataclass
class Batch:
    """``codes`` [B, 2Q, T] int64, ``text`` [B, T] int64 or None, ``mask`` [B, T] (False on padding), and the
    stream position *after* this batch (save it to resume with the next one)."""

    codes: torch.Tensor
    text: torch.Tensor | None
    mask: torch.Tensor
    state: dict

    @property
    def real_frames(self) -> int:
        return int(self.mask.sum())


@dataclass
class LoaderStats:
    samples: int = 0
    real_frames: int = 0
    pad_frames: int = 0
    windows: int = 0
    per_kind: dict = field(default_factory=dict)

    @property
    def padding_fraction(self) -> float:
        total = self.real_frames + self.pad_frames
        return self.pad_frames / total if total else 0.0


class PackedStream:
    """Batches of packed windows for one rank (see the module docstring). ``split``: "train" or "val";
    ``loop``: endless epochs (training) or one pass padded at the end (validation, eval)."""

    def __init__(self, shards: list[str], info: TokenInfo, *, context: int, batch_size: int, silence_code: int,
                 seed: int = 0, rank: int = 0, world: int = 1, split: str = "train", val_fraction: float = 0.0,
                 loop: bool = True, text: TextFn | None = None, text_pad: int = 0) -> None:
        if context < 1 or batch_size < 1:
            raise ValueError("context and batch_size must be at least 1")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be train, val or all, not {split!r}")
        if not shards:
            raise ValueError("no token shards to read")
        self.shards, self.info = list(shards), info
        self.context, self.batch_size, self.silence_code = context, batch_size, silence_code
        self.seed, self.rank, self.world = seed, rank, world
        self.split, self.val_fraction, self.loop = split, val_fraction, loop
        self.text, self.text_pad = text, text_pad
        self.pos = {"epoch": 0, "shard": 0, "sample": 0, "offset": 0}
        self.stats = LoaderStats()

    # -- position ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**self.pos, "rank": self.rank, "world": self.world, "seed": self.seed, "shards": len(self.shards)}

    def load_state_dict(self, d: dict) -> None:
        """Continue from a saved position (a state of this rank, same seed, world size and shard list)."""
        mine = (self.rank, self.world, self.seed, len(self.shards))
        theirs = (d.get("rank"), d.get("world"), d.get("seed"), d.get("shards"))
        if mine != theirs:
            raise ValueError(f"loader state is for (rank, world, seed, shards) = {theirs}, this loader is {mine}")
        self.pos = {k: int(d[k]) for k in ("epoch", "shard", "sample", "offset")}

    # -- order ---------------------------------------------------------------------------------------------
    def by_shard(self) -> bool:
        return len(self.shards) >= self.world

    def rank_shards(self, epoch: int) -> list[int]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards)).tolist()
        return order[self.rank::self.world] if self.by_shard() else order

    def _keep(self, sample_id: str) -> bool:
        if self.split == "all":
            return True
        return is_val(sample_id, self.val_fraction) == (self.split == "val")

    def _shard_samples(self, epoch: int, j: int) -> list[tuple[str, dict[str, bytes]]]:
        items = list(storage.iter_shard(self.shards[j]))
        perm = np.random.default_rng([self.seed, epoch, j]).permutation(len(items)).tolist()
        items = [items[p] for p in perm]
        if not self.by_shard():
            items = [it for n, it in enumerate(items) if (n + j) % self.world == self.rank]
        return items

    def _pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray | None, dict, dict]]:
        """(codes [2Q, n], text [n] | None, position of its first frame, position after it) from the current
        position on."""
        p = dict(self.pos)
        empty_epochs = 0
        while True:
            got = 0
            shards = self.rank_shards(p["epoch"])
            for si in range(p["shard"], len(shards)):
                items = self._shard_samples(p["epoch"], shards[si])
                for sj in range(p["sample"] if si == p["shard"] else 0, len(items)):
                    key, members = items[sj]
                    meta = json.loads(members["json"])
                    if not self._keep(str(meta.get("sample_id") or key)):
                        continue
                    codes, meta = sample_streams(key, members, self.info, self.silence_code)
                    txt = self.text(meta, codes.shape[1]) if self.text is not None else None
                    start = p["offset"] if (si, sj) == (p["shard"], p["sample"]) else 0
                    if start == 0:
                        self.stats.samples += 1
                        k = meta.get("kind", "mono")
                        self.stats.per_kind[k] = self.stats.per_kind.get(k, 0) + 1
                    got += 1
                    at = {"epoch": p["epoch"], "shard": si, "sample": sj, "offset": start}
                    after = {"epoch": p["epoch"], "shard": si, "sample": sj + 1, "offset": 0}
                    yield codes[:, start:], (txt[start:] if txt is not None else None), at, after
            p = {"epoch": p["epoch"] + 1, "shard": 0, "sample": 0, "offset": 0}
            if not self.loop:
                return
            empty_epochs = empty_epochs + 1 if got == 0 else 0
            if empty_epochs >= max(2, self.world + 1):
                raise ValueError(f"rank {self.rank}: no {self.split} samples in {len(self.shards)} token shard(s) "
                                 f"(val_fraction {self.val_fraction}); add data or lower val_fraction")

    def __iter__(self) -> Iterator[Batch]:
        """Batches from the current position; after each one, ``self.pos`` (and the batch's ``state``) is the
        position of the first frame not yet yielded."""
        C, B, Q2 = self.context, self.batch_size, 2 * self.info.num_codebooks
        pieces = self._pieces()
        pending = None
        done = False
        while not done:
            codes = np.zeros((B, Q2, C), np.int64)
            text = np.full((B, C), self.text_pad, np.int64) if self.text is not None else None
            mask = np.zeros((B, C), bool)
            pos = dict(self.pos)
            rows = 0
            for w in range(B):
                fill = 0
                while fill < C:
                    if pending is None:
                        pending = next(pieces, None)
                        if pending is None:
                            done = True
                            break
                    pc, pt, at, after = pending
                    take = min(C - fill, pc.shape[1])
                    codes[w, :, fill:fill + take] = pc[:, :take]
                    if text is not None and pt is not None:
                        text[w, fill:fill + take] = pt[:take]
                    mask[w, fill:fill + take] = True
                    fill += take
                    if take < pc.shape[1]:  # the rest of this sample opens the next window
                        pos = {**at, "offset": at["offset"] + take}
                        pending = (pc[:, take:], pt[take:] if pt is not None else None, pos, after)
                    else:
                        pos = after
                        pending = None
                if fill == 0:
                    break
                rows += 1
                self.stats.windows += 1
                self.stats.real_frames += fill
                self.stats.pad_frames += C - fill
            if rows == 0:
                return
            self.pos = pos
            yield Batch(torch.from_numpy(codes[:rows]), torch.from_numpy(text[:rows]) if text is not None else None,
                        torch.from_numpy(mask[:rows]), self.state_dict())


def prefetch(it: Iterator[Batch], depth: int = 4) -> Iterator[Batch]:
    """Run ``it`` in a background thread, ``depth`` batches ahead (each batch carries its own position)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    END = object()

    def work() -> None:
        try:
            for b in it:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, daemon=True, name="lm-loader")
    t.start()
    try:
        while True:
            b = q.get()
            if b is END:
                return
            if isinstance(b, BaseException):
                raise b
            yield b
    finally:
        stop.set()
