"""Bring-your-own codecs and TorchScript export.

``load_codec(spec)`` accepts

* a matalu codec checkpoint: a ``codec.pt`` file, a ``checkpoints/step-…`` folder, or a training output folder
  (its ``checkpoints/latest.json`` is followed);
* a TorchScript file (``torch.jit.load``) exposing ``encode(wav [B,1,T]) -> codes [B,Q,F]`` and
  ``decode(codes) -> wav`` and the attributes ``sample_rate``, ``frame_rate``, ``num_codebooks``,
  ``codebook_size`` (``codec_id`` optional: defaults to ``ts-<sha256 of the file, 12 hex>``);
* ``module:factory`` (e.g. ``my_pkg.codecs:load``): a callable returning a :class:`codec.base.Codec`;
* ``encodec:DIR``, ``dac:DIR``, ``mimi:DIR`` (``#q=N`` for N codebooks): public codecs from a local transformers
  model folder (codec/public.py; nothing is downloaded from a hub; a clear error says what is missing).

``export_torchscript(model, uri)`` writes our codec as a TorchScript file that gives identical codes.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import zipfile
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import storage
from codec.base import check_codec
from codec.model import CodecModel

PUBLIC_CODECS = ("encodec", "dac", "mimi", "snac")  # codec/public.py


class ScriptableCodec(nn.Module):
    """Our codec's batch path as a TorchScript-able module: ``encode``/``decode`` plus the Codec attributes."""

    def __init__(self, model: CodecModel) -> None:
        super().__init__()
        import copy

        m = copy.deepcopy(model).cpu().eval()
        self.encoder = m.encoder
        self.quantizer = m.quantizer
        self.decoder = m.decoder
        self.codec_id = model.codec_id
        self.sample_rate = int(model.sample_rate)
        self.frame_rate = float(model.frame_rate)
        self.num_codebooks = int(model.num_codebooks)
        self.codebook_size = int(model.codebook_size)
        self.hop = int(model.hop)

    @torch.jit.export
    def encode(self, wav: Tensor) -> Tensor:
        wav = F.pad(wav, (0, (-wav.shape[-1]) % self.hop))
        return self.quantizer.encode(self.encoder(wav))

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        return self.decoder(self.quantizer.decode(codes))

    def forward(self, wav: Tensor) -> Tensor:
        return self.encode(wav)


def export_torchscript(model: CodecModel, uri: str) -> str:
    """Write ``model`` as a TorchScript file at ``uri``; returns its codec_id (the same as the model's)."""
    scripted = torch.jit.script(ScriptableCodec(model))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    storage.write_bytes(uri, buf.getvalue())
    return str(scripted.codec_id)


class TorchScriptCodec:
    """A Codec over a loaded TorchScript module."""

    def __init__(self, module: torch.jit.ScriptModule, where: str, file_sha256: str, device: str = "cpu") -> None:
        need = ("sample_rate", "frame_rate", "num_codebooks", "codebook_size")
        missing = [a for a in need if not hasattr(module, a)] + [m for m in ("encode", "decode") if not hasattr(module, m)]
        if missing:
            raise ValueError(f"TorchScript codec {where} lacks {', '.join(missing)}: export encode/decode with "
                             "@torch.jit.export and set the attributes sample_rate, frame_rate, num_codebooks, codebook_size")
        self.module = module.eval()
        self.device = torch.device(device)
        self.sample_rate = int(module.sample_rate)
        self.frame_rate = float(module.frame_rate)
        self.num_codebooks = int(module.num_codebooks)
        self.codebook_size = int(module.codebook_size)
        cid = str(getattr(module, "codec_id", "") or "")
        self.codec_id = cid or f"ts-{file_sha256[:12]}"
        self.source = where

    def encode(self, wav: Tensor) -> Tensor:
        with torch.no_grad():
            return self.module.encode(wav.to(self.device, torch.float32)).long()

    def decode(self, codes: Tensor) -> Tensor:
        with torch.no_grad():
            return self.module.decode(codes.to(self.device).long())

    def to(self, device: str | torch.device) -> "TorchScriptCodec":
        self.module.to(device)
        self.device = torch.device(device)
        return self


def _is_torchscript(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _resolve_checkpoint(uri: str) -> str:
    """A training output or checkpoint folder -> its codec.pt; a file stays as it is."""
    u = str(uri).rstrip("/")
    for cand in (storage.join(u, "checkpoints", "latest.json"), storage.join(u, "latest.json")):
        if storage.exists(cand):
            return json.loads(storage.read_text(cand))["uri"]
    if storage.exists(storage.join(u, "codec.pt")):
        return storage.join(u, "codec.pt")
    return u


def _looks_like_factory(spec: str) -> bool:
    if "://" in spec or spec.count(":") != 1:
        return False
    mod, attr = spec.split(":")
    return bool(mod) and bool(attr) and "/" not in mod and not mod.endswith((".pt", ".ts", ".pth"))


def load_codec(spec: str, device: str = "cpu") -> Any:
    """Load a Codec from a checkpoint, TorchScript file, ``module:factory`` or ``encodec|dac|mimi:PATH``."""
    spec = str(spec)
    head, sep, rest = spec.partition(":")
    if sep and head in PUBLIC_CODECS and "://" not in spec[: len(head) + 3]:
        from codec.public import load_public

        return load_public(head, rest, device)
    if _looks_like_factory(spec) and not (storage.is_local(spec) and storage.local_path(spec).exists()):
        mod_name, attr = spec.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise ValueError(f"--codec {spec}: cannot import module {mod_name!r} ({e})") from e
        obj: Any = mod
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"--codec {spec}: {mod_name} has no attribute {attr!r}")
            obj = getattr(obj, part)
        codec = obj() if callable(obj) and not hasattr(obj, "encode") else obj
        check_codec(codec, f"--codec {spec}")
        if hasattr(codec, "to"):
            codec = codec.to(device) or codec
        if hasattr(codec, "eval"):
            codec.eval()
        return codec
    uri = _resolve_checkpoint(spec)
    if not storage.exists(uri):
        raise FileNotFoundError(f"codec {spec!r} not found (expected a codec.pt checkpoint, a training output folder, "
                                "a TorchScript file, or module:factory)")
    data = storage.read_bytes(uri)
    if _is_torchscript(data):
        module = torch.jit.load(io.BytesIO(data), map_location=device)
        return check_codec(TorchScriptCodec(module, uri, hashlib.sha256(data).hexdigest(), device), uri)
    try:
        ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{uri} is neither a TorchScript codec nor a matalu codec checkpoint: {e}") from e
    return CodecModel.from_checkpoint(ck).to(device).eval()
