"""Adversarial training for the codec (optional, docs/DESIGN.md §8): EnCodec's multi-scale STFT discriminator, hinge losses
and the relative feature-matching loss.

* :class:`MultiScaleSTFTDiscriminator`: one 2-D conv net per STFT resolution (n_fft 1024/2048/512, hop n/4 by
  default); input channels are the real and imaginary parts of the complex STFT (``[B, 2, frames, bins]``), then
  conv (3, 9) → three convs (3, 9) with frequency stride 2 and time dilation 1, 2, 4 → conv (3, 3) → a 1-channel
  logit map; LeakyReLU(0.2), weight norm. Returns every scale's logits and intermediate feature maps.
* Losses (hinge GAN as in EnCodec/Mimi): discriminator ``mean(relu(1 − D(x))) + mean(relu(1 + D(G(z))))``,
  generator ``mean(relu(1 − D(G(z))))``; feature matching ``mean |f(x) − f(G(z))| / mean |f(x)|`` over layers and
  scales (EnCodec's relative L1), averaged per scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:
            convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1),
                                               padding=(d, 4))))
        convs.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``x`` [B, 1, T] → (logits [B, 1, frames, bins'], feature maps)."""
        spec = torch.stft(x.float().flatten(0, 1), self.n_fft, self.hop, window=self.window, center=True,
                          return_complex=True, normalized=True)  # [B, bins, frames]
        h = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [B, 2, frames, bins]
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (1024, 2048, 512), channels: int = 32) -> None:
        super().__init__()
        self.discs = nn.ModuleList(STFTDiscriminator(n, n // 4, channels) for n in n_ffts)

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        logits, feats = [], []
        for d in self.discs:
            lg, fm = d(x)
            logits.append(lg)
            feats.append(fm)
        return logits, feats


def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Hinge loss of the discriminator, averaged over scales."""
    loss = real[0].new_zeros((), dtype=torch.float32)
    for r, f in zip(real, fake):
        loss = loss + F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean()
    return loss / len(real)


def generator_adv_loss(fake: list[Tensor]) -> Tensor:
    """Hinge loss of the generator (the codec), averaged over scales."""
    loss = fake[0].new_zeros((), dtype=torch.float32)
    for f in fake:
        loss = loss + F.relu(1 - f.float()).mean()
    return loss / len(fake)


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """EnCodec's relative feature loss: per layer ``mean|r − f| / mean|r|`` (real features are targets)."""
    loss = real[0][0].new_zeros((), dtype=torch.float32)
    n = 0
    for rs, fs in zip(real, fake):
        for r, f in zip(rs, fs):
            r = r.detach().float()
            loss = loss + (r - f.float()).abs().mean() / r.abs().mean().clamp(min=1e-8)
            n += 1
    return loss / max(n, 1)


def split_batch(logits: list[Tensor], feats: list[list[Tensor]], n: int):
    """Split outputs of the discriminator run on ``cat([real, fake])`` (``n`` real items first)."""
    real = ([lg[:n] for lg in logits], [[f[:n] for f in fs] for fs in feats])
    fake = ([lg[n:] for lg in logits], [[f[n:] for f in fs] for fs in feats])
    return real, fake
