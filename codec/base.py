"""The Codec protocol (docs/DESIGN.md §8) and small helpers every codec implementation shares.

A codec turns 16 kHz mono audio ``[B, 1, T]`` (float, -1..1) into integer codes ``[B, Q, F]`` (int64, each in
``0..codebook_size-1``) at ``frame_rate`` frames per second, and back. ``codec_id`` names the exact weights:
``"<name>-<first 12 hex of the sha256 of the weights>"``; token shards live under it so two codecs never mix.

Frame rule (used by the encode job and checked by tests): a clip of ``n`` samples gives
``F = ceil(n / hop)`` frames, ``hop = sample_rate / frame_rate``; the last partial frame is zero-padded.

Streaming codecs also expose explicit state objects, kept apart from the model (as moshi keeps streaming state
apart from the training forward): ``state = codec.init_encode_state(B)``, then
``codes, state = codec.encode_step(chunk, state)`` for consecutive chunks (any length; whole frames come out as
soon as their samples are in), and ``codec.encode_step(empty, state, final=True)`` to flush a partial frame.
Decoding likewise: ``init_decode_state(B)`` / ``decode_step(codes, state)`` -> ``[B, 1, f * hop]``.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

REQUIRED_ATTRS = ("codec_id", "sample_rate", "frame_rate", "num_codebooks", "codebook_size")


@runtime_checkable
class Codec(Protocol):
    codec_id: str  # "<name>-<sha256 of weights, 12 hex>"
    sample_rate: int  # 16000 for ours
    frame_rate: float  # 50.0 default (12.5 and 25 configurable)
    num_codebooks: int  # 8
    codebook_size: int  # 1024

    def encode(self, wav: Tensor) -> Tensor:  # [B, 1, T] float -> [B, Q, F] int64
        ...

    def decode(self, codes: Tensor) -> Tensor:  # [B, Q, F] -> [B, 1, T]
        ...


@runtime_checkable
class StreamingCodec(Codec, Protocol):
    def init_encode_state(self, batch_size: int) -> Any: ...

    def encode_step(self, wav: Tensor, state: Any, final: bool = False) -> tuple[Tensor, Any]: ...

    def init_decode_state(self, batch_size: int) -> Any: ...

    def decode_step(self, codes: Tensor, state: Any) -> tuple[Tensor, Any]: ...


def hop_length(codec: Codec) -> int:
    hop = codec.sample_rate / float(codec.frame_rate)
    if abs(hop - round(hop)) > 1e-6:
        raise ValueError(f"codec {codec.codec_id}: sample_rate/frame_rate = {hop} is not a whole number of samples")
    return int(round(hop))


def frame_hop(codec: Codec) -> Fraction:
    """Samples per frame, ``sample_rate / frame_rate``, exact: an int-valued Fraction for our codecs, a fractional
    one for e.g. EnCodec 24 kHz behind the 16 kHz adapter (75 Hz -> 640/3 samples)."""
    return Fraction(int(codec.sample_rate)) / Fraction(float(codec.frame_rate)).limit_denominator(10_000)


def num_frames(num_samples: int, hop: int | Fraction) -> int:
    """Frames a clip of ``num_samples`` gives: ``ceil(num_samples / hop)`` (the last partial frame is padded)."""
    hop = Fraction(hop)
    return -(-int(num_samples) * hop.denominator // hop.numerator)


def state_dict_digest(state: dict[str, Tensor]) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of every tensor, names sorted: independent of pickling."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def codec_id_from_state_dict(name: str, state: dict[str, Tensor]) -> str:
    return f"{name}-{state_dict_digest(state)[:12]}"


def known_keys(cls: type, d: dict, what: str) -> dict:
    """A copy of ``d`` after checking that every key is a field of dataclass ``cls`` (else: which are unknown)."""
    import dataclasses

    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}")
    return dict(d)


def check_codec(obj: Any, where: str = "codec") -> Any:
    """Raise a clear error when ``obj`` does not look like a :class:`Codec`; return it otherwise."""
    missing = [a for a in REQUIRED_ATTRS if not hasattr(obj, a)]
    missing += [m for m in ("encode", "decode") if not callable(getattr(obj, m, None))]
    if missing:
        raise ValueError(f"{where} is not a Codec: missing {', '.join(missing)} (see codec/base.py)")
    cid = str(obj.codec_id)
    if not cid or "/" in cid or cid.startswith("."):
        raise ValueError(f"{where}: codec_id {cid!r} must be a non-empty name usable as a directory")
    if int(obj.codebook_size) > 32768:
        raise ValueError(f"{where}: codebook_size {obj.codebook_size} does not fit the int16 token shards")
    if not math.isfinite(float(obj.frame_rate)) or float(obj.frame_rate) <= 0:
        raise ValueError(f"{where}: frame_rate must be positive")
    return obj
