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

**Rows** (the server's batch of conversations, lm/serve.py): :func:`init_rows` makes a state whose ``pos`` is a
tensor ``[B]`` and whose ``generator`` is one ``torch.Generator`` per row, so rows that joined at different times
each keep their own rotary positions, cache fill and random stream; :func:`cat_rows` / :func:`select_rows` add and
drop conversations between steps, and ``step(..., active=mask)`` advances only the rows that have a user frame
(the others are computed and discarded: every slot such a step writes is rewritten before it is read). A row gives
the same tokens as the same conversation run alone with :func:`init_state` (tests/lm/test_generate.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lm.layers import KVCache
from lm.model import AudioLM


@dataclass
class StreamState:
    pos: int | Tensor  # delayed position the next step computes (= steps taken); rows: a tensor [B]
    caches: list[KVCache]  # temporal transformer, ring of cfg.context positions
    depth_caches: list[KVCache]  # depth transformer, Q steps, rewritten every frame
    audio: Tensor  # [B, 2Q, W] delayed tokens by position (ring of W = 2 * max_delay + 2)
    text: Tensor | None  # [B, W]
    generator: torch.Generator | list[torch.Generator] | None = None  # rows: one per row
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


def init_rows(model: AudioLM, seeds: Sequence[int], *, dtype: torch.dtype | None = None) -> StreamState:
    """Fresh conversations, one row each, every row with its own position and its own generator seeded ``seeds[i]``."""
    state = init_state(model, len(seeds), dtype=dtype)
    state.pos = torch.zeros(len(seeds), dtype=torch.long, device=model.device)
    state.generator = [torch.Generator(device=model.device).manual_seed(int(s)) for s in seeds]
    return state


def cat_rows(a: StreamState, b: StreamState) -> StreamState:
    """The rows of ``a`` then those of ``b`` (both made by :func:`init_rows` or derived from it)."""
    def cat(x: Tensor | None, y: Tensor | None) -> Tensor | None:
        return None if x is None else torch.cat([x, y])

    return StreamState(
        pos=torch.cat([a.pos, b.pos]),
        caches=[type(c)(cat(c.k, d.k), cat(c.v, d.v)) for c, d in zip(a.caches, b.caches)],
        depth_caches=[type(c)(cat(c.k, d.k), cat(c.v, d.v)) for c, d in zip(a.depth_caches, b.depth_caches)],
        audio=torch.cat([a.audio, b.audio]), text=cat(a.text, b.text), generator=[*a.generator, *b.generator])


def select_rows(state: StreamState, rows: Sequence[int]) -> StreamState:
    """Only ``rows`` of ``state`` (in that order): the conversations that go on."""
    idx = torch.as_tensor(list(rows), dtype=torch.long, device=state.audio.device)

    def pick(x: Tensor | None) -> Tensor | None:
        return None if x is None else x.index_select(0, idx)

    return StreamState(
        pos=pick(state.pos), caches=[type(c)(pick(c.k), pick(c.v)) for c in state.caches],
        depth_caches=[type(c)(pick(c.k), pick(c.v)) for c in state.depth_caches], audio=pick(state.audio),
        text=pick(state.text), generator=[state.generator[i] for i in rows])


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


def _choose(logits: Tensor, state: StreamState, t: int | Tensor, start: int, fill: int, forced: Tensor | None,
            temperature: float, top_k: int, active: Tensor | None) -> Tensor:
    """The tokens ``[B]`` of one stream at position ``t``: ``fill`` before the stream's ``start`` (its delay), else
    ``forced`` or a sample. Rows: each row draws from its own generator, only when it is active and started."""
    b = logits.shape[0]
    if not isinstance(t, Tensor):
        if t < start:
            return torch.full((b,), fill, dtype=torch.long, device=logits.device)
        if forced is not None:
            return forced.to(logits.device).long()
        return sample(logits, temperature, top_k, state.generator)
    live = t >= start
    if forced is not None:
        return torch.where(live, forced.to(logits.device).long(), fill)
    draw = live if active is None else live & active
    if temperature <= 0:  # greedy: no generator is drawn from, so the whole batch at once
        return torch.where(draw, logits.argmax(dim=-1), fill)
    tok = torch.full((b,), fill, dtype=torch.long, device=logits.device)
    for i in draw.nonzero()[:, 0].tolist():
        tok[i] = sample(logits[i:i + 1], temperature, top_k, state.generator[i])[0]
    return tok


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.inference_mode()
def step(model: AudioLM, state: StreamState, user_codes: Tensor, *, temperature: float | Sequence[float] = 0.8,
         top_k: int | Sequence[int] = 250, text_temperature: float = 0.7, text_top_k: int = 25,
         force_system: Tensor | None = None, force_text: Tensor | None = None, active: Tensor | None = None,
         timings: dict[str, float] | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Feed the user's frame ``user_codes [B, Q]``; returns ``(system_codes [B, Q], text [B] | None)`` of frame
    ``state.pos - max_delay`` (both ``None`` until that frame exists). Audio temperature/top-k may be given per
    codebook; text has its own. ``force_system [B, Q]`` / ``force_text [B]`` replace sampling with the given
    tokens of this delayed position (teacher forcing, prompts, tests).

    A state from :func:`init_rows` (``pos`` a tensor): ``active [B]`` bool says which rows have a user frame this
    step (default all); only those advance and sample. The codes come back for every row, ``-1`` where a row has
    no frame (inactive, or not ``max_delay`` steps in yet). ``timings``, when given, gets the seconds spent in the
    temporal (+ text head) and the depth transformer added under ``"temporal"`` and ``"depth"``."""
    cfg = model.cfg
    q, t, w = cfg.Q, state.pos, state.window
    b = state.audio.shape[0]
    if user_codes.shape != (b, q):
        raise ValueError(f"user_codes must be [B={b}, Q={q}]; got {tuple(user_codes.shape)}")
    rows = isinstance(t, Tensor)
    if active is not None and not rows:
        raise ValueError("active= needs a state with a position per row (lm.generate.init_rows)")
    delays = cfg.codebook_delays
    temps, topks = _per_codebook(temperature, q, "temperature"), _per_codebook(top_k, q, "top_k")
    dev = state.audio.device
    user_codes = user_codes.to(dev).long()
    ar = torch.arange(b, device=dev) if rows else slice(None)
    t0 = time.perf_counter() if timings is not None else 0.0
    for k, d in enumerate(delays):
        state.audio[ar, q + k, (t + d) % w] = user_codes[:, k]
    # temporal transformer on position t - 1's tokens
    prev = (t - 1) % w
    if rows:
        audio_in = state.audio[ar, :, prev][..., None]
        text_in = None if state.text is None else state.text[ar, prev][:, None]
    else:
        audio_in = state.audio[:, :, prev:prev + 1]
        text_in = None if state.text is None else state.text[:, prev:prev + 1]
    h = model.norm(model.temporal.step(model.embed(audio_in, text_in), state.caches, t))[:, 0]  # [B, dim]
    # text of position t
    text_tok = None
    if cfg.has_text:
        state.text_logits = model.text_logits(h)
        text_tok = _choose(state.text_logits, state, t, cfg.text_delay, cfg.text_initial_id, force_text,
                           text_temperature, text_top_k, active)
        state.text[ar, t % w] = text_tok
    if timings is not None:
        _sync(dev)
        t1 = time.perf_counter()
        timings["temporal"] = timings.get("temporal", 0.0) + t1 - t0
        t0 = t1
    # depth transformer: system codebooks of position t, one after another
    logits, prev_tok = [], text_tok
    for k in range(q):
        x = model.depth_input(h, k, prev_tok)
        lk = model.depth_step_logits(model.depth.step(x, state.depth_caches, k), k)
        logits.append(lk)
        tok = _choose(lk, state, t, delays[k], cfg.audio_initial_id,
                      None if force_system is None else force_system[:, k], temps[k], topks[k], active)
        state.audio[ar, k, t % w] = tok
        prev_tok = tok
    state.audio_logits = torch.stack(logits, dim=1)
    if timings is not None:
        _sync(dev)
        timings["depth"] = timings.get("depth", 0.0) + time.perf_counter() - t0
    f = t - cfg.max_delay
    if rows:
        ok = f >= 0 if active is None else (f >= 0) & active
        state.pos = t + 1 if active is None else t + active.long()
        codes = torch.stack([state.audio[ar, k, (f + d) % w] for k, d in enumerate(delays)], dim=1)
        codes = torch.where(ok[:, None], codes, -1)
        text = None if state.text is None else torch.where(ok, state.text[ar, (f + cfg.text_delay) % w], -1)
        return codes, text
    state.pos = t + 1
    # the frame whose every stream is now known
    if f < 0:
        return None, None
    codes = torch.stack([state.audio[:, k, (f + d) % w] for k, d in enumerate(delays)], dim=1)
    text = None if state.text is None else state.text[:, (f + cfg.text_delay) % w].clone()
    return codes, text
