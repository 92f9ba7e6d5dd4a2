"""Public codecs as :class:`codec.base.Codec`: EnCodec, DAC and Mimi from a local Hugging Face model folder.

``--codec encodec:DIR``, ``dac:DIR`` or ``mimi:DIR`` (optionally ``…#q=N`` for N codebooks; default 8, or all the
model has when fewer). ``DIR`` is a model folder as ``transformers`` saves it (``config.json`` + weights), e.g. a
copy of ``facebook/encodec_24khz``, ``descript/dac_16khz`` or ``kyutai/mimi`` made on a machine with hub access
(``huggingface-cli download kyutai/mimi --local-dir DIR``). Nothing is downloaded here: the folder is opened
with ``local_files_only=True``; the models come from ``transformers`` (extras ``encodec``, ``dac``, ``mimi``).

The adapter speaks the platform's 16 kHz: ``encode`` resamples to the model's rate, pads the right edge to whole
model frames and returns ``ceil(T × frame_rate / 16000)`` frames (the frame rule of codec.base with a hop that may
be fractional, e.g. EnCodec 24 kHz at 75 Hz = 213⅓ samples at 16 kHz); ``decode`` resamples back to 16 kHz.
``codec_id`` = ``<name>-q<N>-<sha256 of the weight files, 12 hex>``.

SNAC is not adapted: its codebooks run at different frame rates, which token shards ``[channels × Q, frames]``
cannot hold; wrap it yourself (``module:factory``) if you flatten its codes to one rate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codec.base import frame_hop, num_frames

PLATFORM_RATE = 16000
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".th")
# name -> (transformers class, hub folder users copy, pyproject extra)
MODELS = {
    "encodec": ("EncodecModel", "facebook/encodec_24khz", "encodec"),
    "dac": ("DacModel", "descript/dac_16khz", "dac"),
    "mimi": ("MimiModel", "kyutai/mimi", "mimi"),
}


def parse_spec(rest: str) -> tuple[str, int | None]:
    """``DIR`` or ``DIR#q=N`` -> (DIR, N or None)."""
    path, sep, opt = rest.partition("#")
    if not sep:
        return path, None
    key, _, val = opt.partition("=")
    if key != "q" or not val.isdigit() or int(val) < 1:
        raise ValueError(f"codec option {opt!r}: expected #q=N (number of codebooks), e.g. mimi:DIR#q=8")
    return path, int(val)


def weights_digest(folder: Path) -> str:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\n")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class HFCodec:
    """EnCodec / DAC / Mimi from ``transformers`` behind the Codec protocol (16 kHz in and out)."""

    def __init__(self, name: str, folder: str, num_codebooks: int | None = None, device: str = "cpu") -> None:
        if name not in MODELS:
            raise ValueError(f"unknown public codec {name!r}; choose one of {', '.join(sorted(MODELS))}")
        cls_name, hub, extra = MODELS[name]
        root = Path(folder).expanduser()
        if not folder or not (root / "config.json").is_file() or not any(
                p.name.endswith(WEIGHT_SUFFIXES) for p in root.iterdir()):
            raise FileNotFoundError(
                f"{name} weights not found in {folder or '(no folder given)'}: expected a transformers model folder "
                f"(config.json + weights), e.g. a copy of {hub} made where the hub is reachable "
                f"(`huggingface-cli download {hub} --local-dir DIR`); nothing is downloaded from a hub here")
        if importlib.util.find_spec("transformers") is None:
            raise ValueError(f"{name}: the weights are in {folder} but transformers is not installed; install the "
                             f"extra (pip install 'matalu[{extra}]')")
        import transformers

        self.name, self.folder = name, str(root)
        self.model = getattr(transformers, cls_name).from_pretrained(str(root), local_files_only=True).eval().to(device)
        self.device = torch.device(device)
        cfg = self.model.config
        self.model_rate = int(cfg.sampling_rate)
        # transformers' Encodec/Dac configs round frame_rate up to an int (DAC 16 kHz: 32 for 31.25); use the hop
        if name == "dac":
            self.frame_rate = self.model_rate / int(cfg.hop_length)
        elif name == "encodec":
            self.frame_rate = self.model_rate / math.prod(int(r) for r in cfg.upsampling_ratios)
        else:
            self.frame_rate = float(cfg.frame_rate)
        self.codebook_size = int(cfg.codebook_size)
        self.model_hop = self.model_rate / self.frame_rate
        most = self._max_codebooks()
        q = num_codebooks or min(8, most)
        if q > most:
            raise ValueError(f"{name} in {folder} has at most {most} codebooks; asked for #q={q}")
        self.num_codebooks = q
        self._bandwidth = None
        if name == "encodec":  # EnCodec picks its codebook count through a bandwidth
            bits = self.frame_rate * q * (self.codebook_size.bit_length() - 1) / 1000.0
            ok = [float(b) for b in cfg.target_bandwidths]
            if not any(abs(bits - b) < 1e-6 for b in ok):
                valid = [int(round(b * 1000 / (self.frame_rate * (self.codebook_size.bit_length() - 1)))) for b in ok]
                raise ValueError(f"encodec: #q={q} is not one of its bandwidths; valid #q: {valid}")
            self._bandwidth = bits
        self.sample_rate = PLATFORM_RATE
        self.codec_id = f"{name}-q{q}-{weights_digest(root)[:12]}"

    def _max_codebooks(self) -> int:
        cfg = self.model.config
        if self.name == "encodec":
            bits = self.codebook_size.bit_length() - 1  # per code
            return int(round(max(cfg.target_bandwidths) * 1000 / (self.frame_rate * bits)))
        if self.name == "dac":
            return int(cfg.n_codebooks)
        return int(cfg.num_quantizers)

    def to(self, device: str | torch.device) -> "HFCodec":
        self.model.to(device)
        self.device = torch.device(device)
        return self

    def eval(self) -> "HFCodec":
        return self

    def _resample(self, x: Tensor, orig: int, new: int) -> Tensor:
        if orig == new:
            return x
        import torchaudio

        return torchaudio.functional.resample(x, orig, new)

    @torch.no_grad()
    def encode(self, wav: Tensor) -> Tensor:
        """[B, 1, T] at 16 kHz -> [B, Q, ceil(T × frame_rate / 16000)] int64."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected audio [B, 1, T], got {tuple(wav.shape)}")
        n = int(wav.shape[-1])
        frames = num_frames(n, frame_hop(self))
        x = self._resample(wav.to(self.device, torch.float32), PLATFORM_RATE, self.model_rate)
        whole = int(round(frames * self.model_hop))
        x = torch.nn.functional.pad(x, (0, max(0, whole - x.shape[-1])))[..., :whole]
        if self.name == "encodec":
            codes = self.model.encode(x, bandwidth=self._bandwidth).audio_codes[0]  # [chunks=1, B, Q, F] -> [B, Q, F]
        elif self.name == "dac":
            codes = self.model.encode(x, n_quantizers=self.num_codebooks).audio_codes
        else:
            codes = self.model.encode(x, num_quantizers=self.num_codebooks).audio_codes
        codes = codes[:, : self.num_codebooks, :frames]
        if codes.shape[-1] < frames:
            raise ValueError(f"{self.codec_id}: {codes.shape[-1]} frames for {n} samples; expected {frames}")
        return codes.long()

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """[B, Q, F] -> [B, 1, T] at 16 kHz."""
        c = codes.to(self.device).long()
        if self.name == "encodec":
            y = self.model.decode(c[None], [None]).audio_values
        elif self.name == "dac":
            y = self.model.decode(audio_codes=c).audio_values
        else:
            y = self.model.decode(c).audio_values
        if y.dim() == 2:
            y = y[:, None]
        return self._resample(y.float(), self.model_rate, PLATFORM_RATE)


def load_public(name: str, rest: str, device: str = "cpu") -> Any:
    if name == "snac":
        raise ValueError("snac: SNAC's codebooks run at different frame rates, which token shards [channels × Q, "
                         "frames] cannot hold; wrap it in a module:factory that returns one frame rate")
    folder, q = parse_spec(rest)
    return HFCodec(name, folder, q, device)
