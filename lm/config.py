"""The audio LM's model settings (one dataclass; ``tiny`` for tests, ``125m`` the plan's, ``1b``).

Token ids the model adds to the codec's ``K`` codes (``0..K-1``) and to the text vocabulary ``V``:

* ``audio_initial_id = K``: what the model sees where a stream has no token yet (the first position, and the
  positions a delayed codebook is shifted into; as Moshi's "initial token"). Never a training target.
* ``user_silence_id = K + 1``: the user stream of **mono** samples (a monologue has no second speaker). A dedicated
  id, not the codec's code for digital silence, because (a) it is the same for every codec, so the loader that
  reads token shards needs no codec to make it, and (b) a real recording's quiet user channel has room noise and
  breath the codec codes as something else; the model should not learn that "quiet" means "nobody is connected".
  :func:`mono_user_stream` fills it; dialog samples always carry the user's real codes.
* ``text_initial_id = V``: the text stream's initial token. ``text_pad_id`` / ``text_epad_id`` are ids inside the
  text vocabulary (set from the tokenizer): pad on frames with no word starting, end-of-pad on the frame before a
  word's tokens (as Moshi). Their values are settings because the tokenizer owns them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from codec.base import known_keys

SIZES = ("tiny", "125m", "1b")


@dataclass
class LMConfig:
    size: str = "tiny"  # tiny | 125m | 1b: LMConfig.preset(size, **overrides) fills the dims below
    # temporal transformer (Llama layout: RoPE, RMSNorm, SwiGLU, SDPA; GQA and qkv bias so HF LMs load into it)
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 0  # 0 = num_heads (no grouped-query attention)
    head_dim: int = 0  # 0 = dim // num_heads
    ffn_mult: float = 2.6667  # SwiGLU hidden = ffn_dim, or int(dim * ffn_mult) rounded up to a multiple of 64
    ffn_dim: int = 0  # explicit SwiGLU hidden size (set by --init hf:DIR); 0 = from ffn_mult
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v
    out_bias: bool = False  # Llama's attention_bias=True also biases o_proj
    tie_text_embeddings: bool = False  # the text head shares the text embedding's weights (HF tie_word_embeddings)
    # depth transformer: one frame's system codebooks one after another, conditioned on the temporal output
    depth_dim: int = 32
    depth_layers: int = 1
    depth_heads: int = 2
    depth_ffn_mult: float = 2.6667
    depth_per_step_weights: bool = True  # each codebook step has its own linear weights (Moshi)
    # streams
    num_codebooks: int = 8  # Q, set from the token shards
    codebook_size: int = 1024  # K, set from the token shards
    text_vocab: int = 0  # V including pad and end-of-pad; 0 = no text stream
    text_pad_id: int = 3
    text_epad_id: int = 0
    delays: list[int] | None = None  # per codebook (system and user alike); None = [0] + [1] * (Q - 1)
    text_delay: int = 0
    context: int = 128  # frames per training window; the streaming KV cache keeps this many frames
    # loss
    first_codebook_weight: float = 100.0  # codebook 0's cross-entropy weight relative to the others (Moshi: 100)
    text_padding_weight: float = 0.5  # weight of text positions whose target is the pad id (Moshi: 0.5)
    dropout: float = 0.0

    # -- derived -----------------------------------------------------------------------------------------------
    @property
    def Q(self) -> int:
        return int(self.num_codebooks)

    @property
    def K(self) -> int:
        return int(self.codebook_size)

    @property
    def has_text(self) -> bool:
        return int(self.text_vocab) > 0

    @property
    def audio_initial_id(self) -> int:
        return self.K

    @property
    def user_silence_id(self) -> int:
        return self.K + 1

    @property
    def audio_vocab(self) -> int:
        """Rows of each audio embedding: K codes, the initial id, the user-silence id."""
        return self.K + 2

    @property
    def text_initial_id(self) -> int:
        return int(self.text_vocab)

    @property
    def codebook_delays(self) -> list[int]:
        return [0] + [1] * (self.Q - 1) if self.delays is None else [int(d) for d in self.delays]

    @property
    def max_delay(self) -> int:
        return max(self.codebook_delays + ([int(self.text_delay)] if self.has_text else []))

    @property
    def kv_heads(self) -> int:
        return int(self.num_kv_heads) or int(self.num_heads)

    @property
    def attn_head_dim(self) -> int:
        return int(self.head_dim) or int(self.dim) // int(self.num_heads)

    @property
    def hidden_dim(self) -> int:
        return int(self.ffn_dim) or _round_up(int(self.dim * self.ffn_mult), 64)

    @property
    def depth_hidden_dim(self) -> int:
        return _round_up(int(self.depth_dim * self.depth_ffn_mult), 64)

    def validate(self) -> "LMConfig":
        if self.size not in SIZES:
            raise ValueError(f"unknown LM size {self.size!r}; choose one of {', '.join(SIZES)}")
        if self.Q < 1 or self.K < 2:
            raise ValueError(f"need at least one codebook of two codes (num_codebooks={self.Q}, codebook_size={self.K})")
        if self.num_heads % self.kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {self.kv_heads}")
        if not self.head_dim and self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be a multiple of num_heads {self.num_heads} (or set head_dim)")
        if self.attn_head_dim % 2 or (self.depth_dim // max(self.depth_heads, 1)) % 2 or self.depth_dim % self.depth_heads:
            raise ValueError("head dims must be even (RoPE) and depth_dim a multiple of depth_heads")
        d = self.codebook_delays
        if len(d) != self.Q:
            raise ValueError(f"delays has {len(d)} entries; give one per codebook (num_codebooks={self.Q})")
        if min(d + [int(self.text_delay)]) < 0:
            raise ValueError("delays must be >= 0")
        if self.max_delay >= self.context:
            raise ValueError(f"the largest delay {self.max_delay} must be below context {self.context}")
        if self.has_text:
            for name in ("text_pad_id", "text_epad_id"):
                if not 0 <= getattr(self, name) < self.text_vocab:
                    raise ValueError(f"{name}={getattr(self, name)} is outside the text vocabulary (0..{self.text_vocab - 1})")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        kw = known_keys(cls, d, "LM model config")
        if kw.get("delays") is not None:
            kw["delays"] = [int(x) for x in kw["delays"]]
        return cls(**kw).validate()

    @classmethod
    def preset(cls, size: str, **overrides: Any) -> "LMConfig":
        """The ``size`` preset's dims, then ``overrides`` (any field, e.g. ``num_codebooks`` read from the data)."""
        if size not in PRESETS:
            raise ValueError(f"unknown LM size {size!r}; choose one of {', '.join(SIZES)}")
        return cls.from_dict({"size": size, **PRESETS[size], **overrides})


def model_config(settings: dict | None) -> LMConfig:
    """The ``model:`` mapping of a configs/lm-*.yaml file -> LMConfig: its ``size`` preset (default tiny), then every
    other key as an override (unknown keys are an error naming them)."""
    if not isinstance(settings or {}, dict):
        raise ValueError("the `model:` section must be a mapping of LMConfig settings (see configs/lm-tiny.yaml)")
    d = dict(settings or {})
    return LMConfig.preset(str(d.pop("size", "tiny")), **d)


def load_model_config(path: str) -> LMConfig:
    """The model settings of a YAML file (local or s3://): its ``model:`` section (other sections are ignored here)."""
    import yaml

    import storage

    d = yaml.safe_load(storage.read_text(path)) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping with a `model:` section (see configs/lm-tiny.yaml)")
    return model_config(d.get("model"))


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


# Only what differs from the dataclass defaults (which are the tiny model's).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {},
    # 125m: GPT-2-small-sized temporal transformer (85M in its layers) + a 4-layer depth transformer; with Q=8,
    # K=1024 about 125M parameters in all.
    "125m": dict(dim=768, num_layers=12, num_heads=12, depth_dim=256, depth_layers=4, depth_heads=4, context=500),
    # 1b: 18 layers of 2048 (about 0.93B) + a 4-layer 512 depth transformer; trained with FSDP2.
    "1b": dict(dim=2048, num_layers=18, num_heads=16, depth_dim=512, depth_layers=4, depth_heads=8, context=500),
}


def mono_user_stream(system_codes: Any, cfg: LMConfig) -> Any:
    """``[..., Q, T]`` system codes (numpy or torch) -> ``[..., 2Q, T]`` with the user rows all ``user_silence_id``
    (how mono samples train: the system stream is the speaker, the user stream says "nobody is talking to you")."""
    fill = cfg.user_silence_id
    if hasattr(system_codes, "new_full"):  # torch
        import torch

        return torch.cat([system_codes, system_codes.new_full(system_codes.shape, fill)], dim=-2)
    import numpy as np

    arr = np.asarray(system_codes)
    return np.concatenate([arr, np.full(arr.shape, fill, dtype=arr.dtype)], axis=-2)
