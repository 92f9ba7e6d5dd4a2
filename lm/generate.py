"""Streaming generation: one frame of user codes in, one frame of system codes out.

Everything that changes from frame to frame lives in a :class:`StreamState`, apart from the model (whose training
forward is untouched): the temporal transformer's KV caches (a ring of ``cfg.context`` frames, so a conversation
may run past the training window), the depth transformer's per-frame caches, and the delay buffers.

Step ``t`` (``state.pos``) does what the training forward does at delayed position ``t``:

1. the user's frame ``t`` goes into the delay buffer (codebook ``k`` at position ``t + d_k``);
2. the temporal transformer takes position ``t - 1``'s delayed tokens of every stream (the initial tokens at
   ``t = 0``) and gives ``h_t``;
3. the text token of position ``t`` is sampled from ``h_t``, then the depth transformer samples system codebooks
   0..Q-1 of position ``t`` one after another (positions a delay shifts in are the initial token, not sampled);
4. the system frame ``t - max_delay`` is now complete and is returned (``None`` for the first ``max_delay`` steps;
   to get the last frames, keep stepping with the user's silence: lm/respond.py feeds the codec's codes of
   digital silence).

``state.audio_logits [B, Q, K]`` / ``state.text_logits [B, V]`` keep the last step's logits: with the system and
text tokens forced to a batch's delayed tokens they equal the training forward's logits at that position
(tests/lm/test_generate.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lm.layers import KVCache
from lm.model import AudioLM


@dataclass
class StreamState:
    pos: int  # delayed position the next step computes (= steps taken)
    caches: list[KVCache]  # temporal transformer, ring of cfg.context positions
    depth_caches: list[KVCache]  # depth transformer, Q steps, rewritten every frame
    audio: Tensor  # [B, 2Q, W] delayed tokens by position (ring of W = 2 * max_delay + 2)
    text: Tensor | None  # [B, W]
    generator: torch.Generator | None = None
    audio_logits: Tensor | None = None  # last step's [B, Q, K]
    text_logits: Tensor | None = None  # last step's [B, V]

    @property
    def window(self) -> int:
        return int(self.audio.shape[-1])


def init_state(model: AudioLM, batch_size: int = 1, *, seed: int | None = None,
               dtype: torch.dtype | None = None) -> StreamState:
    """A fresh conversation for ``model`` (its device; caches in ``dtype``, default the model's weights')."""
    cfg = model.cfg
    dev = model.device
    dtype = dtype or model.norm.weight.dtype
    w = 2 * cfg.max_delay + 2
    gen = None
    if seed is not None:
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(seed))
    return StreamState(
        pos=0,
        caches=model.temporal.new_caches(batch_size, cfg.context, dev, dtype),
        depth_caches=model.depth.new_caches(batch_size, cfg.Q, dev, dtype),
        audio=torch.full((batch_size, 2 * cfg.Q, w), cfg.audio_initial_id, dtype=torch.long, device=dev),
        text=(torch.full((batch_size, w), cfg.text_initial_id, dtype=torch.long, device=dev) if cfg.has_text else None),
        generator=gen,
    )


def sample(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None = None) -> Tensor:
    """``logits [B, V]`` -> ids ``[B]``: argmax when ``temperature <= 0``, else softmax(logits / T) over the top k
    (``top_k <= 0``: all)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _per_codebook(v: float | Sequence[float], q: int, name: str) -> list:
    if isinstance(v, (int, float)):
        return [v] * q
    v = list(v)
    if len(v) != q:
        raise ValueError(f"{name} has {len(v)} values; give one number or one per codebook ({q})")
    return v


@torch.inference_mode()
def step(model: AudioLM, state: StreamState, user_codes: Tensor, *, temperature: float | Sequence[float] = 0.8,
         top_k: int | Sequence[int] = 250, text_temperature: float = 0.7, text_top_k: int = 25,
         force_system: Tensor | None = None, force_text: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Feed the user's frame ``user_codes [B, Q]``; returns ``(system_codes [B, Q], text [B] | None)`` of frame
    ``state.pos - max_delay`` (both ``None`` until that frame exists). Audio temperature/top-k may be given per
    codebook; text has its own. ``force_system [B, Q]`` / ``force_text [B]`` replace sampling with the given
    tokens of this delayed position (teacher forcing, prompts, tests)."""
    cfg = model.cfg
    q, t, w = cfg.Q, state.pos, state.window
    b = state.audio.shape[0]
    if user_codes.shape != (b, q):
        raise ValueError(f"user_codes must be [B={b}, Q={q}]; got {tuple(user_codes.shape)}")
    delays = cfg.codebook_delays
    temps, topks = _per_codebook(temperature, q, "temperature"), _per_codebook(top_k, q, "top_k")
    user_codes = user_codes.to(state.audio.device).long()
    for k, d in enumerate(delays):
        state.audio[:, q + k, (t + d) % w] = user_codes[:, k]
    # temporal transformer on position t - 1's tokens
    prev = (t - 1) % w
    audio_in = state.audio[:, :, prev:prev + 1]
    text_in = None if state.text is None else state.text[:, prev:prev + 1]
    h = model.norm(model.temporal.step(model.embed(audio_in, text_in), state.caches, t))[:, 0]  # [B, dim]
    # text of position t
    text_tok = None
    if cfg.has_text:
        state.text_logits = model.text_logits(h)
        if t < cfg.text_delay:
            text_tok = torch.full((b,), cfg.text_initial_id, dtype=torch.long, device=h.device)
        elif force_text is not None:
            text_tok = force_text.to(h.device).long()
        else:
            text_tok = sample(state.text_logits, text_temperature, text_top_k, state.generator)
        state.text[:, t % w] = text_tok
    # depth transformer: system codebooks of position t, one after another
    logits, prev_tok = [], text_tok
    for k in range(q):
        x = model.depth_input(h, k, prev_tok)
        lk = model.depth_step_logits(model.depth.step(x, state.depth_caches, k), k)
        logits.append(lk)
        if t < delays[k]:
            tok = torch.full((b,), cfg.audio_initial_id, dtype=torch.long, device=h.device)
        elif force_system is not None:
            tok = force_system[:, k].to(h.device).long()
        else:
            tok = sample(lk, temps[k], topks[k], state.generator)
        state.audio[:, k, t % w] = tok
        prev_tok = tok
    state.audio_logits = torch.stack(logits, dim=1)
    state.pos = t + 1
    # the frame whose every stream is now known
    f = t - cfg.max_delay
    if f < 0:
        return None, None
    codes = torch.stack([state.audio[:, k, (f + d) % w] for k, d in enumerate(delays)], dim=1)
    text = None if state.text is None else state.text[:, (f + cfg.text_delay) % w].clone()
    return codes, text
