"""The audio LM (Moshi layout), frame-rate agnostic: nothing here knows the codec's frame rate, only Q and K.

Streams per frame: ``[text (optional)] + Q system codebooks + Q user codebooks``. Batches hold them undelayed and
frame-aligned (:class:`LMBatch`); the model applies the acoustic delays itself:

* **delays**: stream ``s`` with delay ``d`` is shifted right by ``d`` (``delayed[t] = codes[t - d]``), the first
  ``d`` positions hold ``audio_initial_id`` (text: ``text_initial_id``). Default: text and codebook 0 undelayed,
  codebooks 1..Q-1 one step later, for system and user alike (``LMConfig.delays``, ``text_delay``).
* **temporal transformer** (causal, RoPE, RMSNorm, SwiGLU, SDPA): its input at position ``t`` is the sum of every
  stream's embedding of the delayed tokens at ``t - 1`` (position 0: the initial tokens); its output ``h_t``
  predicts the delayed tokens at ``t``: text through a linear head; the system codebooks through
* **the depth transformer**, which runs over the Q codebook steps of position ``t``: step 0's input is
  ``proj_0(h_t)`` (+ the embedding of position ``t``'s text token when there is a text stream), step ``k``'s is
  ``proj_k(h_t) + emb_k(system codebook k-1 at t)``; step ``k`` predicts system codebook ``k``. Training feeds the
  true tokens (teacher forcing); generation feeds its own samples (lm/generate.py).
* **loss** (:meth:`AudioLM.loss`): cross-entropy on the system codebooks only (the user stream is input), codebook
  0 weighted ``first_codebook_weight`` times the others, averaged over tokens; text cross-entropy with targets that
  are the pad id weighted ``text_padding_weight``; total = audio + text. Positions a delay shifted in, and frames
  whose ``mask`` is False, are never targets.

Logits come back in *delayed* coordinates: ``audio_logits[:, k, t]`` predicts codebook ``k`` of frame ``t - d_k``
(:meth:`AudioLM.targets` gives the matching targets and validity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lm.config import LMConfig
from lm.layers import RMSNorm, StepLinear, Transformer, apply, normal_


@dataclass
class LMBatch:
    codes: Tensor  # [B, 2Q, T] int64, undelayed: rows 0..Q-1 system, Q..2Q-1 user
    text: Tensor | None = None  # [B, T] text ids aligned to frames (the pad id where no token), or None
    mask: Tensor | None = None  # [B, T] bool, True on real frames; only those are loss targets

    def to(self, device) -> "LMBatch":
        return LMBatch(self.codes.to(device), None if self.text is None else self.text.to(device),
                       None if self.mask is None else self.mask.to(device))


@dataclass
class LMOutput:
    audio_logits: Tensor  # [B, Q, T, K] system codebooks, delayed coordinates
    text_logits: Tensor | None  # [B, T, V] or None


@dataclass
class LMLoss:
    total: Tensor  # scalar, differentiable
    per_stream: dict[str, float]  # "audio" (weighted), "audio_cb0".."audio_cb{Q-1}", "text" (weighted, if any)
    counts: dict[str, int] = field(default_factory=dict)  # target tokens behind each per_stream entry


def matmul_params_per_frame(cfg: LMConfig) -> tuple[int, int]:
    """(temporal, depth) weights one frame multiplies: temporal layers + text head; depth input maps, layers
    (per-step weights: the one step's copy, Q times) and heads. Embedding lookups are not counted."""
    hd, kvh = cfg.attn_head_dim, cfg.kv_heads
    per_layer = cfg.dim * hd * (2 * cfg.num_heads + 2 * kvh) + 3 * cfg.dim * cfg.hidden_dim
    temporal = cfg.num_layers * per_layer + cfg.dim * cfg.text_vocab
    dd = cfg.depth_dim
    depth_step = cfg.dim * dd + cfg.depth_layers * (4 * dd * dd + 3 * dd * cfg.depth_hidden_dim) + dd * cfg.K
    return temporal, cfg.Q * depth_step


def delay_streams(x: Tensor, delays: list[int], fill: int) -> Tensor:
    """``x [B, S, T]`` -> the same shape with row ``s`` shifted right by ``delays[s]``, ``fill`` shifted in."""
    out = torch.full_like(x, fill)
    t = x.shape[-1]
    for s, d in enumerate(delays):
        if d < t:
            out[:, s, d:] = x[:, s, :t - d]
    return out


def _shift_in(x: Tensor, fill: int) -> Tensor:
    """Model input from delayed tokens: position t sees position t-1; position 0 sees ``fill``."""
    return torch.cat([torch.full_like(x[..., :1], fill), x[..., :-1]], dim=-1)


class AudioLM(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        q, dim = cfg.Q, cfg.dim
        self.audio_emb = nn.ModuleList(nn.Embedding(cfg.audio_vocab, dim) for _ in range(2 * q))
        self.text_emb = nn.Embedding(cfg.text_vocab + 1, dim) if cfg.has_text else None
        self.temporal = Transformer(cfg.num_layers, dim, cfg.num_heads, cfg.kv_heads, cfg.attn_head_dim, cfg.hidden_dim,
                                    eps=cfg.norm_eps, theta=cfg.rope_theta, qkv_bias=cfg.qkv_bias, out_bias=cfg.out_bias,
                                    dropout=cfg.dropout)
        self.norm = RMSNorm(dim, cfg.norm_eps)
        self.text_head = (nn.Linear(dim, cfg.text_vocab, bias=False)
                          if cfg.has_text and not cfg.tie_text_embeddings else None)
        # depth transformer
        dd, steps = cfg.depth_dim, (q if cfg.depth_per_step_weights else None)
        self.depth_in = StepLinear(q, dim, dd)  # always per step: it tells the depth transformer which codebook
        self.depth_text_emb = nn.Embedding(cfg.text_vocab + 1, dd) if cfg.has_text else None
        self.depth_audio_emb = nn.ModuleList(nn.Embedding(cfg.audio_vocab, dd) for _ in range(q - 1))
        self.depth = Transformer(cfg.depth_layers, dd, cfg.depth_heads, cfg.depth_heads, dd // cfg.depth_heads,
                                 cfg.depth_hidden_dim, eps=cfg.norm_eps, theta=cfg.rope_theta, steps=steps,
                                 dropout=cfg.dropout)
        self.depth_norm = RMSNorm(dd, cfg.norm_eps)
        self.depth_head = StepLinear(q, dd, cfg.K)
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                normal_(m.weight)
        if self.text_head is not None:
            normal_(self.text_head.weight)

    # -- pieces shared with generation ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def embed(self, audio_in: Tensor, text_in: Tensor | None, include_audio: bool = True) -> Tensor:
        """Sum of the stream embeddings: ``audio_in [B, 2Q, T]``, ``text_in [B, T]`` -> ``[B, T, dim]``.
        ``include_audio=False`` leaves the audio streams out (the text-only path that equals an HF text LM)."""
        x = None
        if include_audio:
            for s, emb in enumerate(self.audio_emb):
                e = emb(audio_in[:, s])
                x = e if x is None else x + e
        if text_in is not None:
            if self.text_emb is None:
                raise ValueError("this LM has no text stream (text_vocab=0) but text tokens were given")
            e = self.text_emb(text_in)
            x = e if x is None else x + e
        if x is None:
            raise ValueError("nothing to embed: audio left out and no text stream")
        return x

    def text_logits(self, h: Tensor) -> Tensor | None:
        if not self.cfg.has_text:
            return None
        if self.text_head is not None:
            return self.text_head(h)
        return F.linear(h, self.text_emb.weight[: self.cfg.text_vocab])

    def hidden(self, audio_in: Tensor, text_in: Tensor | None, include_audio: bool = True) -> Tensor:
        """Temporal transformer over already shifted/delayed inputs -> normed ``h [B, T, dim]``."""
        return self.norm(self.temporal(self.embed(audio_in, text_in, include_audio)))

    def depth_input(self, h: Tensor, k: int, prev: Tensor | None) -> Tensor:
        """Depth step ``k``'s input ``[N, 1, dd]`` from ``h [N, dim]`` and the previous token ``prev [N]`` (step 0:
        the text token, or None without a text stream)."""
        x = self.depth_in(h[:, None, :], k)
        if k == 0:
            return x if prev is None else x + self.depth_text_emb(prev)[:, None]
        return x + self.depth_audio_emb[k - 1](prev)[:, None]

    def depth_logits(self, h: Tensor, text: Tensor | None, system: Tensor) -> Tensor:
        """Teacher-forced depth pass: ``h [B, T, dim]``, delayed ``text [B, T]``, delayed ``system [B, Q, T]`` ->
        ``[B, Q, T, K]``."""
        cfg = self.cfg
        b, t, _ = h.shape
        w = self.depth_in.weight  # [Q, dd, dim]: every step reads the same h, so one matmul serves all Q maps
        x = F.linear(h.reshape(b * t, -1), w.reshape(-1, w.shape[-1])).view(b * t, cfg.Q, -1)  # [N, Q, dd]
        tok = []
        if text is not None:
            tok.append(self.depth_text_emb(text.reshape(b * t)))
        else:
            tok.append(x.new_zeros(b * t, x.shape[-1]))
        for k in range(1, cfg.Q):
            tok.append(self.depth_audio_emb[k - 1](system[:, k - 1].reshape(b * t)))
        x = x + torch.stack(tok, dim=1)
        y = self.depth_head(self.depth_norm(self.depth(x)))  # [N, Q, K]
        return y.view(b, t, cfg.Q, cfg.K).permute(0, 2, 1, 3)

    def depth_step_logits(self, x: Tensor, k: int) -> Tensor:
        """Head of depth step ``k`` on its transformer output ``x [N, 1, dd]`` -> ``[N, K]``."""
        return apply(self.depth_head, self.depth_norm(x), k)[:, 0]

    # -- training ---------------------------------------------------------------------------------------------
    def delayed(self, batch: LMBatch) -> tuple[Tensor, Tensor | None]:
        cfg = self.cfg
        codes = batch.codes
        if codes.dim() != 3 or codes.shape[1] != 2 * cfg.Q:
            raise ValueError(f"codes must be [B, 2Q={2 * cfg.Q}, T] (system rows then user rows); got {tuple(codes.shape)}")
        if cfg.has_text and batch.text is None:
            raise ValueError("this LM has a text stream (text_vocab > 0): the batch needs text tokens [B, T]")
        if not cfg.has_text and batch.text is not None:
            raise ValueError("this LM has no text stream (text_vocab=0) but the batch has text tokens")
        audio = delay_streams(codes.long(), cfg.codebook_delays * 2, cfg.audio_initial_id)
        text = None
        if batch.text is not None:
            text = delay_streams(batch.text.long()[:, None], [cfg.text_delay], cfg.text_initial_id)[:, 0]
        return audio, text

    def forward(self, batch: LMBatch) -> LMOutput:
        cfg = self.cfg
        audio, text = self.delayed(batch)
        audio_in = _shift_in(audio, cfg.audio_initial_id)
        text_in = None if text is None else _shift_in(text, cfg.text_initial_id)
        h = self.hidden(audio_in, text_in)
        return LMOutput(self.depth_logits(h, text, audio[:, : cfg.Q]), self.text_logits(h))

    def targets(self, batch: LMBatch) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Delayed targets and validity: ``audio [B, Q, T]``, ``audio_ok [B, Q, T]``, ``text [B, T]``, ``text_ok``."""
        cfg = self.cfg
        audio, text = self.delayed(batch)
        b, _, t = batch.codes.shape
        mask = torch.ones(b, t, dtype=torch.bool, device=audio.device) if batch.mask is None else batch.mask.bool()
        audio_ok = delay_streams(mask[:, None].expand(-1, cfg.Q, -1).long(), cfg.codebook_delays, 0).bool()
        text_ok = None
        if text is not None:
            text_ok = delay_streams(mask[:, None].long(), [cfg.text_delay], 0)[:, 0].bool()
        return audio[:, : cfg.Q], audio_ok, text, text_ok

    def loss(self, batch: LMBatch) -> LMLoss:
        cfg = self.cfg
        system = batch.codes[:, : cfg.Q]
        if system.numel() and (int(system.min()) < 0 or int(system.max()) >= cfg.K):
            raise ValueError(f"system codes must be real codec codes 0..{cfg.K - 1}; got {int(system.min())}.."
                             f"{int(system.max())} (is codebook_size set from the token shards?)")
        out = self(batch)
        tgt, ok, ttgt, tok = self.targets(batch)
        q = cfg.Q
        tgt = torch.where(ok, tgt, 0)  # shifted-in positions hold the initial id: never targets
        ce = F.cross_entropy(out.audio_logits.float().reshape(-1, cfg.K), tgt.reshape(-1), reduction="none")
        ce = ce.view(tgt.shape) * ok
        sums, counts = ce.sum(dim=(0, 2)), ok.sum(dim=(0, 2))  # [Q]
        w = torch.ones(q, device=ce.device)
        w[0] = cfg.first_codebook_weight
        audio = (w * sums).sum() / (w * counts).sum().clamp_min(1e-9)
        total = audio
        stats = [audio.detach(), *(sums / counts.clamp_min(1)).detach()]
        names = ["audio", *(f"audio_cb{k}" for k in range(q))]
        ntok = [int(counts.sum()), *counts.tolist()]
        if out.text_logits is not None:
            ttgt = torch.where(tok, ttgt, 0)
            tce = F.cross_entropy(out.text_logits.float().reshape(-1, cfg.text_vocab), ttgt.reshape(-1), reduction="none")
            tw = torch.where(ttgt == cfg.text_pad_id, cfg.text_padding_weight, 1.0) * tok
            text = (tce.view(ttgt.shape) * tw).sum() / tw.sum().clamp_min(1e-9)
            total = total + text
            stats.append(text.detach())
            names.append("text")
            ntok.append(int(tok.sum()))
        values = torch.stack(stats).tolist()
        return LMLoss(total, dict(zip(names, values)), dict(zip(names, ntok)))

    # -- accounting -------------------------------------------------------------------------------------------
    def matmul_params_per_frame(self) -> tuple[int, int]:
        return matmul_params_per_frame(self.cfg)

    def flops_per_frame(self, context: int | None = None, training: bool = True) -> float:
        """FLOPs one frame costs, PaLM's count (appendix B): ``6 N`` for training (``2 N`` forward only), N = the
        matmul weights a frame multiplies (:meth:`matmul_params_per_frame`), plus attention ``6·2·L·H·hd·T``
        (``2·2·…`` forward) with ``T = context`` (not halved for causality, as PaLM and nanoGPT count), and the
        depth transformer's attention over its Q steps likewise. MFU = frames/s × this / peak FLOP/s."""
        cfg = self.cfg
        ctx = int(context or cfg.context)
        temporal, depth = self.matmul_params_per_frame()
        mult = 6 if training else 2
        attn = 2 * cfg.num_layers * cfg.num_heads * cfg.attn_head_dim * ctx
        attn += cfg.Q * 2 * cfg.depth_layers * cfg.depth_dim * cfg.Q
        return float(mult * (temporal + depth + attn))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

