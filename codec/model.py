"""Our own codec: a causal SEANet-like convolutional encoder/decoder around a residual VQ with EMA codebooks.

* Causal: every convolution pads on the left only (``context = (k-1)·d + 1 - stride`` samples), so an output
  frame depends on no future samples; batch and streaming give the same numbers. Streaming keeps, per layer,
  the last ``context`` input samples (convolutions) or the ``k - stride`` overlap tail (transposed
  convolutions) in an explicit state object (:class:`EncodeState`, :class:`DecodeState`).
* Residual VQ: ``num_codebooks`` levels of ``codebook_size`` codes, codebooks updated by exponential moving
  averages (no codebook gradients), initialised from data, dead codes restarted from the current batch;
  straight-through estimator and a commitment loss for the encoder. Distances are computed in float32.
* Frame rate = sample_rate / prod(strides): ``base`` uses (4, 5, 4, 4) -> 320 samples -> 50 Hz at 16 kHz;
  (4, 5, 4, 4, 2) -> 25 Hz; (4, 5, 4, 4, 4) -> 12.5 Hz. ``base`` downsamples by 4 first, as Mimi's SEANet does
  (EnCodec's 24 kHz model starts with 2): the layers at the full sample rate dominate the cost, and a first stride
  of 4 instead of 2 halves it (encode 14× -> 30× realtime per CPU core, benchmarks/RESULTS.md). ``tiny`` keeps
  (2, 4, 5, 8).
* ``codec_id`` = ``"<name>-<sha256 of the state_dict bytes, 12 hex>"`` (see codec.base.state_dict_digest).

The batch path (encoder/quantizer/decoder ``forward``, ``ResidualVQ.encode/decode``) is TorchScript-able; the
training and streaming paths are plain Python and are not compiled.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.base import codec_id_from_state_dict, known_keys, num_frames


@dataclass
class CodecConfig:
    name: str = "matalu"
    sample_rate: int = 16000
    channels: int = 32  # first encoder layer; doubles at every downsampling
    max_channels: int = 512
    latent_dim: int = 128
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])  # encoder order; product = hop
    kernel_size: int = 7
    last_kernel_size: int = 3
    residual_kernel_size: int = 3
    n_residual_layers: int = 1
    dilation_base: int = 2
    compress: int = 2  # residual units' hidden = dim // compress
    num_codebooks: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    dead_code_ratio: float = 0.1  # a code is dead when its EMA usage < ratio × mean usage
    quantizer_dropout: float = 0.0  # probability that a training batch uses a random number of levels

    @property
    def hop(self) -> int:
        return int(math.prod(self.strides))

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def validate(self) -> None:
        if self.codebook_size > 32768:
            raise ValueError("codebook_size must fit int16 token shards (<= 32768)")
        if self.num_codebooks < 1 or self.codebook_size < 2:
            raise ValueError("need at least one codebook of at least two codes")
        if any(s < 1 for s in self.strides):
            raise ValueError("strides must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        kw = known_keys(cls, d, "codec config")
        if "strides" in kw:
            kw["strides"] = [int(s) for s in kw["strides"]]
        return cls(**kw)

    @classmethod
    def preset(cls, size: str, **overrides: Any) -> "CodecConfig":
        """``tiny`` (tests; a few channels) or ``base``; overrides set any field (e.g. ``strides`` for 25 Hz)."""
        presets = {
            "tiny": dict(channels=4, max_channels=64, latent_dim=32, n_residual_layers=1),
            "base": dict(channels=32, max_channels=512, latent_dim=128, n_residual_layers=1, strides=[4, 5, 4, 4]),
        }
        if size not in presets:
            raise ValueError(f"unknown codec size {size!r}; choose one of {sorted(presets)}")
        return cls.from_dict({**presets[size], **overrides})


# -- causal streamable layers ------------------------------------------------------------------------------
class CausalConv1d(nn.Module):
    """Conv1d padded on the left by ``(k-1)·d + 1 - stride``: input length L (a multiple of stride) gives L/stride."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size, stride=stride, dilation=dilation)
        self.context = (kernel_size - 1) * dilation + 1 - stride
        if self.context < 0:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) is shorter than stride {stride}")
        self.sid = ""  # the key of this layer's streaming buffer; set by the owning model

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (self.context, 0)))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch, self.conv.in_channels, self.context, device=device, dtype=dtype)

    def step(self, x: Tensor, st: dict[str, Tensor]) -> Tensor:
        xx = torch.cat([st[self.sid], x], dim=-1)
        st[self.sid] = xx[..., xx.shape[-1] - self.context:]
        return self.conv(xx)


class CausalConvTranspose1d(nn.Module):
    """Transposed conv keeping the first L·stride outputs; streaming carries the ``k - stride`` overlap tail."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        if kernel_size < stride:
            raise ValueError("transposed conv kernel must be at least its stride")
        self.convtr = nn.ConvTranspose1d(cin, cout, kernel_size, stride=stride)
        self.stride = stride
        self.tail = kernel_size - stride
        self.sid = ""

    def forward(self, x: Tensor) -> Tensor:
        y = self.convtr(x)
        return y[..., : x.shape[-1] * self.stride]

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.zeros(batch, self.convtr.out_channels, self.tail, device=device, dtype=dtype)

    def step(self, x: Tensor, st: dict[str, Tensor]) -> Tensor:
        y = F.conv_transpose1d(x, self.convtr.weight, None, stride=self.stride)
        n = x.shape[-1] * self.stride
        prev = st[self.sid]
        y = torch.cat([y[..., : self.tail] + prev, y[..., self.tail:]], dim=-1)
        st[self.sid] = y[..., n:]
        out = y[..., :n]
        if self.convtr.bias is not None:
            out = out + self.convtr.bias[None, :, None]
        return out


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int) -> None:
        super().__init__()
        hidden = max(1, dim // compress)
        self.act1 = nn.ELU()
        self.conv1 = CausalConv1d(dim, hidden, kernel_size, dilation=dilation)
        self.act2 = nn.ELU()
        self.conv2 = CausalConv1d(hidden, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))

    def step(self, x: Tensor, st: dict[str, Tensor]) -> Tensor:
        return x + self.conv2.step(self.act2(self.conv1.step(self.act1(x), st)), st)


def _step_layers(layers: nn.ModuleList, x: Tensor, st: dict[str, Tensor]) -> Tensor:
    for layer in layers:
        x = layer.step(x, st) if hasattr(layer, "step") else layer(x)
    return x


class Encoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = [CausalConv1d(1, ch, cfg.kernel_size)]
        for s in cfg.strides:
            for j in range(cfg.n_residual_layers):
                layers.append(ResidualUnit(ch, cfg.residual_kernel_size, cfg.dilation_base ** j, cfg.compress))
            nxt = min(ch * 2, cfg.max_channels)
            layers += [nn.ELU(), CausalConv1d(ch, nxt, 2 * s, stride=s)]
            ch = nxt
        layers += [nn.ELU(), CausalConv1d(ch, cfg.latent_dim, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: Tensor, st: dict[str, Tensor]) -> Tensor:
        return _step_layers(self.layers, x, st)


class Decoder(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        chans = [cfg.channels]
        for _ in cfg.strides:
            chans.append(min(chans[-1] * 2, cfg.max_channels))
        ch = chans[-1]
        layers: list[nn.Module] = [CausalConv1d(cfg.latent_dim, ch, cfg.kernel_size)]
        for i, s in enumerate(reversed(cfg.strides)):
            nxt = chans[-2 - i]
            layers += [nn.ELU(), CausalConvTranspose1d(ch, nxt, 2 * s, s)]
            ch = nxt
            for j in range(cfg.n_residual_layers):
                layers.append(ResidualUnit(ch, cfg.residual_kernel_size, cfg.dilation_base ** j, cfg.compress))
        layers += [nn.ELU(), CausalConv1d(ch, 1, cfg.kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: Tensor, st: dict[str, Tensor]) -> Tensor:
        return _step_layers(self.layers, x, st)


# -- residual VQ with EMA codebooks -------------------------------------------------------------------------
def _dist_world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class EMACodebook(nn.Module):
    def __init__(self, dim: int, size: int, decay: float = 0.99, dead_code_ratio: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.size, self.decay, self.dead_code_ratio, self.eps = dim, size, decay, dead_code_ratio, eps
        emb = torch.randn(size, dim) / math.sqrt(dim)
        self.register_buffer("initialized", torch.zeros(1))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("embedding_sum", emb.clone())
        self.register_buffer("embedding", emb.clone())

    def encode(self, x: Tensor) -> Tensor:
        """[N, D] -> [N] nearest code (squared Euclidean, float32)."""
        x = x.float()
        e = self.embedding.float()
        d = (x * x).sum(-1, keepdim=True) - 2.0 * (x @ e.t()) + (e * e).sum(-1)[None, :]
        return d.argmin(dim=-1)

    def decode(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.embedding)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def ema_update(self, x: Tensor, codes: Tensor) -> None:
        """EMA k-means step on a batch of vectors ``x`` [N, D] (float32) with their ``codes``; restarts dead codes."""
        import torch.distributed as dist

        world = _dist_world()
        if self.initialized.item() == 0:
            idx = torch.randint(0, x.shape[0], (self.size,), device=x.device)
            self.embedding_sum.copy_(x[idx])
            self.cluster_usage.fill_(1.0)
            self.initialized.fill_(1.0)
            if world > 1:
                dist.broadcast(self.embedding_sum, 0)
            self.embedding.copy_(self.embedding_sum)
            return
        counts = torch.bincount(codes, minlength=self.size).to(x.dtype)
        sums = torch.zeros(self.size, self.dim, device=x.device, dtype=x.dtype).index_add_(0, codes, x)
        if world > 1:
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        threshold = self.dead_code_ratio * self.cluster_usage.sum() / self.size
        dead = self.cluster_usage < threshold
        n_dead = int(dead.sum().item())
        if n_dead:
            idx = torch.randint(0, x.shape[0], (n_dead,), device=x.device)
            self.embedding_sum[dead] = x[idx]
            self.cluster_usage[dead] = 1.0
        if world > 1:
            dist.broadcast(self.embedding_sum, 0)
            dist.broadcast(self.cluster_usage, 0)
        self.embedding.copy_(self.embedding_sum / self.cluster_usage.clamp(min=self.eps)[:, None])


class ResidualVQ(nn.Module):
    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, decay: float, dead_code_ratio: float,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.dropout = dropout
        self.layers = nn.ModuleList(EMACodebook(dim, codebook_size, decay, dead_code_ratio) for _ in range(num_codebooks))

    def encode(self, z: Tensor) -> Tensor:
        """[B, D, F] -> [B, Q, F] int64."""
        b, d, f = z.shape
        residual = z.transpose(1, 2).reshape(b * f, d).float()
        out: list[Tensor] = []
        for layer in self.layers:
            c = layer.encode(residual)
            residual = residual - layer.decode(c)
            out.append(c)
        return torch.stack(out, dim=0).view(len(out), b, f).transpose(0, 1).contiguous()

    def decode(self, codes: Tensor) -> Tensor:
        """[B, Q', F] (Q' <= Q levels) -> [B, D, F] float32."""
        b, q, f = codes.shape
        acc = torch.zeros(b * f, self.dim, device=codes.device, dtype=torch.float32)
        i = 0
        for layer in self.layers:
            if i < q:
                acc = acc + layer.decode(codes[:, i].reshape(-1))
            i += 1
        return acc.view(b, f, self.dim).transpose(1, 2)

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.encode(z))

    def train_quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training forward: (straight-through quantized [B, D, F], codes [B, Q', F], commitment loss).

        In training mode each level's codebook takes an EMA step on its residuals."""
        b, d, f = z.shape
        x = z.transpose(1, 2).reshape(b * f, d).float()
        n_q = len(self.layers)
        if self.training and self.dropout > 0 and torch.rand(()) < self.dropout:
            pick = torch.randint(1, n_q + 1, (1,), device=x.device)
            if _dist_world() > 1:  # every rank must run the same levels (the EMA steps all-reduce per level)
                import torch.distributed as dist

                dist.broadcast(pick, 0)
            n_q = int(pick.item())
        residual = x
        qsum = torch.zeros_like(x)
        commit = x.new_zeros(())
        codes = []
        for layer in list(self.layers)[:n_q]:
            with torch.no_grad():
                c = layer.encode(residual)
                if self.training:
                    layer.ema_update(residual.detach(), c)
                    c = layer.encode(residual)
                q = layer.decode(c)
            commit = commit + F.mse_loss(residual, q)
            residual = residual - q
            qsum = qsum + q
            codes.append(c)
        out = x + (qsum - x).detach()
        out = out.view(b, f, d).transpose(1, 2).to(z.dtype)
        return out, torch.stack(codes, 0).view(n_q, b, f).transpose(0, 1), commit


# -- the codec ----------------------------------------------------------------------------------------------
@dataclass
class EncodeState:
    convs: dict[str, Tensor]
    pending: Tensor  # [B, 1, < hop] samples not yet making a whole frame
    frames: int = 0


@dataclass
class DecodeState:
    convs: dict[str, Tensor]
    frames: int = 0


def cat_states(states: list) -> EncodeState | DecodeState:
    """Several streams' states (all Encode- or all DecodeStates, pending samples of equal length) as one batch,
    rows in order: one ``encode_step``/``decode_step`` then serves them all (the server's sessions)."""
    s0 = states[0]
    convs = {k: torch.cat([s.convs[k] for s in states]) for k in s0.convs}
    if isinstance(s0, EncodeState):
        return EncodeState(convs, torch.cat([s.pending for s in states]), s0.frames)
    return DecodeState(convs, s0.frames)


def split_states(state: EncodeState | DecodeState, before: list) -> list:
    """:func:`cat_states` undone after a step: row ``i``'s state, its frame count advanced as the batch's was."""
    adv = state.frames - before[0].frames
    out = []
    for i, b in enumerate(before):
        convs = {k: v[i:i + 1] for k, v in state.convs.items()}
        if isinstance(state, EncodeState):
            out.append(EncodeState(convs, state.pending[i:i + 1], b.frames + adv))
        else:
            out.append(DecodeState(convs, b.frames + adv))
    return out


class CodecModel(nn.Module):
    """The codec. Implements codec.base.Codec and StreamingCodec."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantizer = ResidualVQ(cfg.latent_dim, cfg.num_codebooks, cfg.codebook_size, cfg.ema_decay,
                                    cfg.dead_code_ratio, cfg.quantizer_dropout)
        for name, m in self.named_modules():
            if isinstance(m, (CausalConv1d, CausalConvTranspose1d)):
                m.sid = name

    # Codec attributes
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def num_codebooks(self) -> int:
        return self.cfg.num_codebooks

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def codec_id(self) -> str:
        """Hash of the current weights (recomputed each time: training changes them)."""
        return codec_id_from_state_dict(self.cfg.name, self.state_dict())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_frames(self, num_samples: int) -> int:
        return num_frames(num_samples, self.hop)

    def _pad(self, wav: Tensor) -> Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(wav.shape)}")
        return F.pad(wav, (0, (-wav.shape[-1]) % self.hop))

    # training
    def forward(self, wav: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction [B, 1, F·hop], codes [B, Q', F], commitment loss); EMA codebook steps in train mode."""
        z = self.encoder(self._pad(wav))
        q, codes, commit = self.quantizer.train_quantize(z)
        return self.decoder(q), codes, commit

    # batch inference
    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        return self.quantizer.encode(self.encoder(self._pad(wav.to(self.device, torch.float32))))

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        return self.decoder(self.quantizer.decode(codes.to(self.device).long()))

    # streaming
    def _init_convs(self, part: nn.Module, batch: int) -> dict[str, Tensor]:
        dev = self.device
        return {m.sid: m.init_state(batch, dev, torch.float32) for m in part.modules()
                if isinstance(m, (CausalConv1d, CausalConvTranspose1d))}

    def init_encode_state(self, batch_size: int) -> EncodeState:
        return EncodeState(self._init_convs(self.encoder, batch_size),
                           torch.zeros(batch_size, 1, 0, device=self.device))

    @torch.no_grad()
    def encode_step(self, wav: Tensor, state: EncodeState, final: bool = False) -> tuple[Tensor, EncodeState]:
        """Feed ``wav`` [B, 1, n] (any n); returns the codes of every frame now complete and the next state.
        ``final=True`` zero-pads and emits a last partial frame (as batch ``encode`` does)."""
        x = torch.cat([state.pending, wav.to(self.device, torch.float32)], dim=-1)
        n = (x.shape[-1] // self.hop) * self.hop
        if final and x.shape[-1] > n:
            x = F.pad(x, (0, self.hop - (x.shape[-1] - n)))
            n = x.shape[-1]
        convs = dict(state.convs)
        if n == 0:
            codes = torch.zeros(x.shape[0], self.num_codebooks, 0, dtype=torch.long, device=x.device)
        else:
            codes = self.quantizer.encode(self.encoder.step(x[..., :n], convs))
        return codes, EncodeState(convs, x[..., n:], state.frames + codes.shape[-1])

    def init_decode_state(self, batch_size: int) -> DecodeState:
        return DecodeState(self._init_convs(self.decoder, batch_size))

    @torch.no_grad()
    def decode_step(self, codes: Tensor, state: DecodeState) -> tuple[Tensor, DecodeState]:
        """Decode ``codes`` [B, Q, f] that follow the frames already decoded; returns [B, 1, f·hop]."""
        convs = dict(state.convs)
        if codes.shape[-1] == 0:
            return torch.zeros(codes.shape[0], 1, 0, device=self.device), DecodeState(convs, state.frames)
        y = self.decoder.step(self.quantizer.decode(codes.to(self.device).long()), convs)
        return y, DecodeState(convs, state.frames + codes.shape[-1])

    # checkpoints
    def checkpoint(self) -> dict:
        return {"format": "matalu-codec/1", "config": self.cfg.to_dict(), "model": self.state_dict(),
                "codec_id": self.codec_id}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "CodecModel":
        if "config" not in ckpt or "model" not in ckpt:
            raise ValueError("not a matalu codec checkpoint (expected keys 'config' and 'model')")
        m = cls(CodecConfig.from_dict(ckpt["config"]))
        m.load_state_dict(ckpt["model"])
        return m.eval()


def num_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
