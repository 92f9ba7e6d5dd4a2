"""LM training checkpoints: one folder per saved step under ``<out>/checkpoints/``, local or ``s3://``.

::

    <out>/checkpoints/step-0000100/model.pt        the full model state dict (gathered from FSDP shards)
    <out>/checkpoints/step-0000100/optimizer.pt    the full optimizer state dict
    <out>/checkpoints/step-0000100/state.pt        step, scheduler, every rank's loader position and RNG states
    <out>/checkpoints/step-0000100/meta.json       model + train config, step, lineage, validation metrics
    <out>/checkpoints/step-0000100/tokenizer.model the text stream's SentencePiece model (text runs only)
    <out>/checkpoints/latest.json                  {"step", "uri"}: written last; a folder without it is unfinished
    <out>/lineage.json  <out>/metrics.jsonl         the data behind the run; one JSON line per logged step

The last ``keep`` folders are kept (and always the one ``latest.json`` names). :func:`load_lm` opens the latest
checkpoint of a run for evaluation and generation.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import torch

import storage

CKPT_DIR = "checkpoints"
FILES = ("model.pt", "optimizer.pt", "state.pt", "meta.json", "tokenizer.model")


def latest_uri(out: str) -> str:
    return storage.join(out, CKPT_DIR, "latest.json")


def step_dir(out: str, step: int) -> str:
    return storage.join(out, CKPT_DIR, f"step-{step:07d}")


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(uri: str):
    return torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=False)


def save(out: str, step: int, *, model: dict, optimizer: dict | None, state: dict, meta: dict,
         tokenizer: bytes | None = None, keep: int = 3) -> str:
    """Write one checkpoint folder, then ``latest.json``, then prune to the last ``keep``. Returns the folder."""
    d = step_dir(out, step)
    storage.write_bytes(storage.join(d, "model.pt"), _torch_bytes(model))
    if optimizer is not None:
        storage.write_bytes(storage.join(d, "optimizer.pt"), _torch_bytes(optimizer))
    storage.write_bytes(storage.join(d, "state.pt"), _torch_bytes(state))
    if tokenizer is not None:
        storage.write_bytes(storage.join(d, "tokenizer.model"), tokenizer)
    storage.write_text(storage.join(d, "meta.json"), json.dumps({**meta, "step": step}, indent=2, sort_keys=True) + "\n")
    storage.write_text(latest_uri(out), json.dumps({"step": step, "uri": d}) + "\n")
    prune(out, keep, protect={d})
    return d


def prune(out: str, keep: int, protect: set[str]) -> None:
    if keep <= 0:
        return
    dirs = sorted({f.rsplit("/", 1)[0] for f in storage.list_files(storage.join(out, CKPT_DIR), "meta.json")})
    for d in dirs[:-keep]:
        if d in protect:
            continue
        for name in FILES:
            storage.remove(storage.join(d, name))


def latest(out: str) -> dict | None:
    """``{"step", "uri"}`` of the run's latest checkpoint, or None."""
    if not storage.exists(latest_uri(out)):
        return None
    return json.loads(storage.read_text(latest_uri(out)))


@dataclass
class Loaded:
    step: int
    uri: str
    model: dict
    optimizer: dict | None
    state: dict
    meta: dict
    tokenizer: bytes | None


def load(out: str, *, optimizer: bool = True) -> Loaded | None:
    info = latest(out)
    if info is None:
        return None
    d = info["uri"]
    opt_uri, tok_uri = storage.join(d, "optimizer.pt"), storage.join(d, "tokenizer.model")
    return Loaded(
        step=int(info["step"]), uri=d, model=_torch_load(storage.join(d, "model.pt")),
        optimizer=_torch_load(opt_uri) if optimizer and storage.exists(opt_uri) else None,
        state=_torch_load(storage.join(d, "state.pt")),
        meta=json.loads(storage.read_text(storage.join(d, "meta.json"))),
        tokenizer=storage.read_bytes(tok_uri) if storage.exists(tok_uri) else None)


def load_lm(run: str, device: str | torch.device = "cpu"):
    """``(AudioLM in eval mode, LMConfig, TextTokenizer | None, meta)`` of the latest checkpoint of the run ``run``
    (a training ``--out``), or of a checkpoint folder itself."""
    from lm.config import LMConfig
    from lm.model import AudioLM
    from lm.text import TextTokenizer

    ck = load(run, optimizer=False)
    if ck is None and storage.exists(storage.join(run, "meta.json")):  # a step-… folder
        meta = json.loads(storage.read_text(storage.join(run, "meta.json")))
        tok_uri = storage.join(run, "tokenizer.model")
        ck = Loaded(int(meta.get("step", 0)), run, _torch_load(storage.join(run, "model.pt")), None, {}, meta,
                    storage.read_bytes(tok_uri) if storage.exists(tok_uri) else None)
    if ck is None:
        raise FileNotFoundError(f"no LM checkpoint under {run} (expected {latest_uri(run)}); "
                                f"train one with `matalu lm train --data TOKENS --out {run}`")
    cfg = LMConfig.from_dict(ck.meta["model"])
    model = AudioLM(cfg)
    rank = int(ck.meta.get("train", {}).get("lora_rank") or 0)
    if rank:  # a LoRA run's checkpoint holds base + adapters: load both, then fold the adapters in
        from lm.lora import apply_lora, merge_lora

        apply_lora(model, rank)
        model.load_state_dict(ck.model)
        merge_lora(model)
    else:
        model.load_state_dict(ck.model)
    model.to(device).eval()
    tok = TextTokenizer(ck.tokenizer) if ck.tokenizer else None
    return model, cfg, tok, {**ck.meta, "checkpoint": ck.uri}
