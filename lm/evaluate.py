"""Loss and perplexity of an LM per stream and codebook over a finite pass of token shards (validation, ``lm eval``).

Each stream's cross-entropy is averaged over its target tokens (``LMLoss.counts``) across batches; perplexity is
``exp`` of it. ``audio`` is the training objective's weighted audio loss (codebook 0 weighted
``first_codebook_weight`` times), so its "perplexity" is only a summary; read the per-codebook rows."""

from __future__ import annotations

import json
import math
from typing import Iterable

import torch

import storage


def batch_of(b, device):
    from lm.model import LMBatch

    return LMBatch(b.codes.to(device, non_blocking=True), None if b.text is None else b.text.to(device, non_blocking=True),
                   b.mask.to(device, non_blocking=True))


@torch.no_grad()
def loss_sums(loss_fn, batches: Iterable, device: torch.device, *, bf16: bool = False) -> dict[str, list[float]]:
    """``{stream: [sum of loss × tokens, tokens]}`` over ``batches`` (lm.data.Batch); ``loss_fn(LMBatch) -> LMLoss``
    (``model.loss``, or the DDP/FSDP-wrapped loss module in training)."""
    sums: dict[str, list[float]] = {}
    for b in batches:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda"):
            out = loss_fn(batch_of(b, device))
        for k, v in out.per_stream.items():
            n = float(out.counts.get(k, 0))
            s = sums.setdefault(k, [0.0, 0.0])
            s[0] += float(v) * n
            s[1] += n
    return sums


def finish(sums: dict[str, list[float]]) -> dict[str, dict]:
    out = {}
    for k, (s, n) in sums.items():
        loss = s / n if n else float("nan")
        out[k] = {"loss": loss, "perplexity": math.exp(min(loss, 80.0)) if n else float("nan"), "tokens": int(n)}
    return out


def render(res: dict[str, dict]) -> str:
    rows = [f"{'stream':<12} {'loss':>9} {'perplexity':>12} {'tokens':>10}"]
    for k, v in res.items():
        rows.append(f"{k:<12} {v['loss']:>9.4f} {v['perplexity']:>12.2f} {v['tokens']:>10d}")
    return "\n".join(rows)


def evaluate(run: str, data: str, *, split: str = "all", batch_size: int = 4, max_batches: int = 0,
             device: str = "cpu", val_fraction: float | None = None, loaded: tuple | None = None) -> dict:
    """Load the run's latest checkpoint (or take ``loaded``, what :func:`lm.checkpoint.load_lm` returned) and score
    it on ``data`` (one pass; ``split`` all | val | train, the val split being the run's own held-out samples)."""
    from lm.checkpoint import load_lm
    from lm.data import PackedStream, probe, token_shards
    from lm.text import TextAligner

    model, cfg, tok, meta = loaded if loaded is not None else load_lm(run, device)
    shards = token_shards(data)
    info = probe(shards)
    if (info.num_codebooks, info.codebook_size) != (cfg.Q, cfg.K):
        raise ValueError(f"{data} has tokens with Q={info.num_codebooks}, K={info.codebook_size}; the LM {run} was "
                         f"trained on Q={cfg.Q}, K={cfg.K} (another codec)")
    vf = float(meta.get("train", {}).get("val_fraction", 0.0)) if val_fraction is None else val_fraction
    stream = PackedStream(shards, info, context=cfg.context, batch_size=batch_size, silence_code=cfg.user_silence_id,
                          split=split, val_fraction=vf, loop=False,
                          text=TextAligner(tok, info.frame_rate) if tok is not None else None,
                          text_pad=tok.pad_id if tok is not None else 0)
    batches = iter(stream)
    if max_batches:
        import itertools

        batches = itertools.islice(batches, max_batches)
    res = finish(loss_sums(model.loss, batches, torch.device(device)))
    return {"run": run, "checkpoint": meta.get("checkpoint"), "step": meta.get("step"), "data": data, "split": split,
            "samples": stream.stats.samples, "frames": stream.stats.real_frames,
            "padding_fraction": round(stream.stats.padding_fraction, 4), "streams": res}


def write_json(res: dict, uri: str) -> None:
    storage.write_text(uri, json.dumps(res, indent=2, ensure_ascii=False) + "\n")
