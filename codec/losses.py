"""Reconstruction losses: multi-scale mel (L1 + L2 on log mels) and multi-resolution STFT (spectral convergence +
log magnitude), plus the mel distance used for evaluation. Computed in float32 outside autocast.

The adversarial losses (optional, ``CodecTrainConfig.adversarial``) live in codec/discriminators.py; their
weights are here (``adv``, ``feat``: EnCodec's λ_g = λ_feat = 3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn


class MultiScaleMelLoss(nn.Module):
    def __init__(self, sample_rate: int = 16000, n_ffts: tuple[int, ...] = (256, 512, 1024, 2048),
                 n_mels: tuple[int, ...] = (32, 64, 80, 80)) -> None:
        super().__init__()
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n, hop_length=n // 4, win_length=n,
                                                 n_mels=m, power=1.0, center=True, f_min=0.0)
            for n, m in zip(n_ffts, n_mels)
        )

    def forward(self, est: Tensor, ref: Tensor) -> Tensor:
        loss = est.new_zeros((), dtype=torch.float32)
        for mel in self.mels:
            a = torch.log(mel(est.float()).clamp(min=1e-5))
            b = torch.log(mel(ref.float()).clamp(min=1e-5))
            loss = loss + F.l1_loss(a, b) + F.mse_loss(a, b)
        return loss / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    def __init__(self, resolutions: tuple[tuple[int, int], ...] = ((512, 128), (1024, 256), (2048, 512))) -> None:
        super().__init__()
        self.resolutions = resolutions
        for n, _ in resolutions:
            self.register_buffer(f"win{n}", torch.hann_window(n), persistent=False)

    def forward(self, est: Tensor, ref: Tensor) -> Tensor:
        est, ref = est.float().flatten(0, 1), ref.float().flatten(0, 1)
        loss = est.new_zeros(())
        for n, hop in self.resolutions:
            w = getattr(self, f"win{n}")
            a = torch.stft(est, n, hop, window=w, return_complex=True).abs().clamp(min=1e-7)
            b = torch.stft(ref, n, hop, window=w, return_complex=True).abs().clamp(min=1e-7)
            sc = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp(min=1e-7)
            loss = loss + sc + F.l1_loss(torch.log(a), torch.log(b))
        return loss / len(self.resolutions)


@dataclass
class LossWeights:
    mel: float = 1.0
    stft: float = 1.0
    l1: float = 0.1
    commit: float = 1.0
    adv: float = 3.0  # generator hinge loss (only with adversarial training)
    feat: float = 3.0  # relative feature matching (only with adversarial training)


class CodecLoss(nn.Module):
    def __init__(self, sample_rate: int = 16000, weights: LossWeights | None = None) -> None:
        super().__init__()
        self.w = weights or LossWeights()
        self.mel = MultiScaleMelLoss(sample_rate)
        self.stft = MultiResolutionSTFTLoss()

    def forward(self, est: Tensor, ref: Tensor, commit: Tensor) -> tuple[Tensor, dict[str, float]]:
        with torch.autocast(device_type=est.device.type, enabled=False):
            est, ref = est.float(), ref.float()
            n = min(est.shape[-1], ref.shape[-1])
            est, ref = est[..., :n], ref[..., :n]
            mel = self.mel(est, ref)
            stft = self.stft(est, ref)
            l1 = F.l1_loss(est, ref)
            total = self.w.mel * mel + self.w.stft * stft + self.w.l1 * l1 + self.w.commit * commit.float()
        return total, {"loss": total.item(), "mel": mel.item(), "stft": stft.item(), "l1": l1.item(),
                       "commit": float(commit.item())}


_MEL_CACHE: dict[tuple, nn.Module] = {}


def mel_distance(est: Tensor, ref: Tensor, sample_rate: int = 16000) -> float:
    """Mean |log10 mel(est) − log10 mel(ref)| (80 mels, 64 ms window, 10 ms hop), over the common length.

    ``est``, ``ref``: [..., T] float. Lower is better; 0 means identical spectra."""
    key = (sample_rate, str(est.device))
    mel = _MEL_CACHE.get(key)
    if mel is None:
        mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=1024, hop_length=sample_rate // 100,
                                                   n_mels=80, power=1.0).to(est.device)
        _MEL_CACHE[key] = mel
    n = min(est.shape[-1], ref.shape[-1])
    with torch.no_grad():
        a = torch.log10(mel(est[..., :n].float()).clamp(min=1e-5))
        b = torch.log10(mel(ref[..., :n].float()).clamp(min=1e-5))
    return float((a - b).abs().mean().item())
