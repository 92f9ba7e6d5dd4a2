"""Transformer pieces shared by the temporal and the depth transformer: RMSNorm, RoPE, attention (PyTorch SDPA,
grouped-query heads, optional q/k/v bias) and SwiGLU, in the Llama layout and parameter names so a Hugging Face
Llama/Qwen2 checkpoint maps onto them one to one (lm/hf_init.py).

The depth transformer may give each codebook step its own weights (:class:`StepLinear`, Moshi's
``depformer_weights_per_step``): an input ``[N, S, D]`` holds ``S`` consecutive steps starting at ``offset``.

Streaming keeps keys/values in a :class:`KVCache` (a ring of ``capacity`` slots: attention over a set of keys that
already carry their rotary phase does not depend on their order, so the oldest slot is simply overwritten).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normal_(t: Tensor, std: float = 0.02) -> None:
    """Initialise in place; tensors on the meta device (sizing, FSDP's deferred init) are left as they are."""
    if not t.is_meta:
        nn.init.normal_(t, std=std)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class StepLinear(nn.Module):
    """``steps`` independent linear maps; ``x [N, S, din]`` uses maps ``offset .. offset+S-1`` along dim 1."""

    def __init__(self, steps: int, din: int, dout: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(steps, dout, din))
        self.bias = nn.Parameter(torch.zeros(steps, dout)) if bias else None
        normal_(self.weight)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        s = x.shape[-2]
        if s == 1:  # one step (generation): a plain matmul, far cheaper than einsum's dispatch
            return F.linear(x, self.weight[offset], None if self.bias is None else self.bias[offset])
        y = torch.einsum("nsi,soi->nso", x, self.weight[offset:offset + s])
        return y if self.bias is None else y + self.bias[offset:offset + s]


def linear(din: int, dout: int, bias: bool, steps: int | None) -> nn.Module:
    return StepLinear(steps, din, dout, bias) if steps else nn.Linear(din, dout, bias=bias)


def apply(module: nn.Module, x: Tensor, offset: int) -> Tensor:
    return module(x, offset) if isinstance(module, StepLinear) else module(x)


def rope(positions: Tensor, head_dim: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos, sin ``[T, head_dim]`` for integer ``positions [T]`` (the rotate-half convention of HF Llama)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim))
    freqs = positions.float()[:, None] * inv[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # x [B, H, T, hd]
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos.to(x.dtype) + rot * sin.to(x.dtype)


@dataclass
class KVCache:
    k: Tensor  # [B, kv_heads, capacity, head_dim]
    v: Tensor

    @classmethod
    def empty(cls, batch: int, kv_heads: int, capacity: int, head_dim: int, device, dtype) -> "KVCache":
        z = torch.zeros(batch, kv_heads, capacity, head_dim, device=device, dtype=dtype)
        return cls(z, z.clone())

    def add(self, k: Tensor, v: Tensor, pos: int) -> tuple[Tensor, Tensor]:
        """Store one position's ``k, v [B, H, 1, hd]`` at absolute position ``pos``; the keys/values to attend to."""
        cap = self.k.shape[2]
        slot = pos % cap
        self.k[:, :, slot:slot + 1] = k
        self.v[:, :, slot:slot + 1] = v
        n = min(pos + 1, cap)
        return self.k[:, :, :n], self.v[:, :, :n]

    def add_rows(self, k: Tensor, v: Tensor, pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`add` with a position per row ``pos [B]`` (sessions that joined at different times): every slot
        comes back with a mask ``[B, 1, 1, capacity]`` of the slots each row may attend to."""
        cap = self.k.shape[2]
        rows = torch.arange(k.shape[0], device=k.device)
        slot = pos % cap
        self.k[rows, :, slot] = k[:, :, 0]
        self.v[rows, :, slot] = v[:, :, 0]
        n = (pos + 1).clamp(max=cap)
        mask = torch.arange(cap, device=k.device)[None, :] < n[:, None]
        return self.k, self.v, mask[:, None, None, :]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, *, qkv_bias: bool = False,
                 out_bias: bool = False, steps: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.dropout = heads, kv_heads, head_dim, dropout
        self.q_proj = linear(dim, heads * head_dim, qkv_bias, steps)
        self.k_proj = linear(dim, kv_heads * head_dim, qkv_bias, steps)
        self.v_proj = linear(dim, kv_heads * head_dim, qkv_bias, steps)
        self.o_proj = linear(heads * head_dim, dim, out_bias, steps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, *, offset: int = 0, cache: KVCache | None = None,
                pos: int | Tensor = 0) -> Tensor:
        b, t, _ = x.shape
        q = apply(self.q_proj, x, offset).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = apply(self.k_proj, x, offset).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = apply(self.v_proj, x, offset).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        gqa = self.kv_heads != self.heads
        if cache is None:
            p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, enable_gqa=gqa)
        else:
            if t != 1:
                raise ValueError("streaming attention takes one position at a time")
            if isinstance(pos, Tensor):  # a position per row
                k, v, mask = cache.add_rows(k, v, pos)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
            else:
                k, v = cache.add(k, v, pos)
                y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        return apply(self.o_proj, y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim), offset)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, steps: int | None = None) -> None:
        super().__init__()
        self.gate_proj = linear(dim, hidden, False, steps)
        self.up_proj = linear(dim, hidden, False, steps)
        self.down_proj = linear(hidden, dim, False, steps)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return apply(self.down_proj, F.silu(apply(self.gate_proj, x, offset)) * apply(self.up_proj, x, offset), offset)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, hidden: int, *, eps: float,
                 qkv_bias: bool = False, out_bias: bool = False, steps: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = Attention(dim, heads, kv_heads, head_dim, qkv_bias=qkv_bias, out_bias=out_bias, steps=steps,
                                   dropout=dropout)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, hidden, steps)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, *, offset: int = 0, cache: KVCache | None = None,
                pos: int | Tensor = 0) -> Tensor:
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, offset=offset, cache=cache, pos=pos))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x), offset))


class Transformer(nn.Module):
    """A stack of pre-norm blocks (no final norm: the owner applies it)."""

    def __init__(self, layers: int, dim: int, heads: int, kv_heads: int, head_dim: int, hidden: int, *, eps: float,
                 theta: float, qkv_bias: bool = False, out_bias: bool = False, steps: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.head_dim, self.theta, self.kv_heads = head_dim, theta, kv_heads
        self._rope: tuple[Tensor, Tensor] | None = None  # cos/sin table for positions 0..len-1 (not a buffer)
        self.layers = nn.ModuleList(Block(dim, heads, kv_heads, head_dim, hidden, eps=eps, qkv_bias=qkv_bias,
                                          out_bias=out_bias, steps=steps, dropout=dropout) for _ in range(layers))
        for m in self.modules():  # GPT-2: normal(0.02), residual outputs scaled by 1/sqrt(2 * layers)
            if isinstance(m, nn.Linear):
                normal_(m.weight)
                if m.bias is not None and not m.bias.is_meta:
                    nn.init.zeros_(m.bias)
        for blk in self.layers:
            for m in (blk.self_attn.o_proj, blk.mlp.down_proj):
                if isinstance(m, nn.Linear):
                    normal_(m.weight, 0.02 / math.sqrt(2 * layers))

    def cos_sin(self, start: int, length: int, device) -> tuple[Tensor, Tensor]:
        """RoPE cos/sin for positions ``start .. start+length-1`` from a table kept per device (grown by doubling
        up to 2^16 positions; beyond, computed directly). The same numbers as :func:`rope`."""
        end = start + length
        if end > 65536:
            return rope(torch.arange(start, end, device=device), self.head_dim, self.theta)
        if self._rope is None or self._rope[0].shape[0] < end or self._rope[0].device != torch.device(device):
            n = max(64, 1 << (end - 1).bit_length())
            self._rope = rope(torch.arange(n, device=device), self.head_dim, self.theta)
        cos, sin = self._rope
        return cos[start:end], sin[start:end]

    def forward(self, x: Tensor, *, offset: int = 0) -> Tensor:
        """Causal over dim 1 of ``x [B, T, D]``; ``offset`` is the first position (and, per-step weights, step)."""
        cos, sin = self.cos_sin(offset, x.shape[1], x.device)
        for blk in self.layers:
            x = blk(x, cos, sin, offset=offset)
        return x

    def new_caches(self, batch: int, capacity: int, device, dtype) -> list[KVCache]:
        return [KVCache.empty(batch, self.kv_heads, capacity, self.head_dim, device, dtype) for _ in self.layers]

    def step(self, x: Tensor, caches: list[KVCache], pos: int | Tensor, *, offset: int | None = None) -> Tensor:
        """One position ``x [B, 1, D]`` at absolute position ``pos`` (per-step weights: step ``offset``, default pos).
        ``pos`` may be a tensor ``[B]``: each row at its own position (its own rotary phase and cache fill)."""
        if isinstance(pos, Tensor):
            table_cos, table_sin = self.cos_sin(0, int(pos.max()) + 1, x.device)
            cos, sin = table_cos[pos][:, None, None, :], table_sin[pos][:, None, None, :]  # [B, 1, 1, hd]
            off = 0 if offset is None else offset
        else:
            cos, sin = self.cos_sin(pos, 1, x.device)
            off = pos if offset is None else offset
        for blk, cache in zip(self.layers, caches):
            x = blk(x, cos, sin, offset=off, cache=cache, pos=pos)
        return x
