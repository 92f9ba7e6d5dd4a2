"""Codec evaluation on segment shards: reconstruction quality, bitrate, codebook use, speed.

Per clip (mono samples; ``dialog`` windows contribute each channel when ``use_dialog``): mel distance
(codec.losses.mel_distance), SI-SDR (dB), STOI (pystoi), PESQ wide-band (pesq; clips it cannot score are
counted in ``pesq_failed``). Over all clips: bitrate = frame_rate × Q × log2(codebook_size), per-level codebook
usage (fraction of codes seen) and perplexity (exp of the code entropy), encode/decode × realtime.

``matalu codec eval --codec SPEC --data URI [--max-samples N] [--json OUT]`` prints a table and writes JSON.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import torch

import storage
from codec.base import check_codec
from codec.losses import mel_distance
from storage.audio import read_sample
from storage.shards import segment_shards


def si_sdr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-9) -> float:
    n = min(len(est), len(ref))
    est, ref = est[:n].astype(np.float64), ref[:n].astype(np.float64)
    est, ref = est - est.mean(), ref - ref.mean()
    alpha = float(est @ ref) / (float(ref @ ref) + eps)
    target = alpha * ref
    noise = est - target
    return float(10 * np.log10((target @ target + eps) / (noise @ noise + eps)))


def eval_clips(data_uri: str, max_samples: int = 32, max_seconds: float = 10.0, use_dialog: bool = False,
               sample_rate: int = 16000) -> list[tuple[str, np.ndarray]]:
    """The first ``max_samples`` clips of the segment shards under ``data_uri`` (shards sorted, in order)."""
    out: list[tuple[str, np.ndarray]] = []
    for uri in segment_shards(data_uri):
        for key, members in storage.iter_shard(uri):
            meta, audio = read_sample(members)
            kind = meta.get("kind", "mono")
            if kind != "mono" and not (use_dialog and kind == "dialog"):
                continue
            for c in range(audio.shape[0] if kind == "dialog" else 1):
                out.append((f"{key}/{c}" if kind == "dialog" else key, audio[c, : int(max_seconds * sample_rate)]))
                if len(out) >= max_samples:
                    return out
    if not out:
        raise ValueError(f"no evaluation clips under {data_uri}")
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def evaluate(codec: Any, data_uri: str, *, max_samples: int = 32, max_seconds: float = 10.0,
             use_dialog: bool = False, device: str = "cpu") -> dict:
    from pesq import pesq
    from pystoi import stoi

    check_codec(codec)
    dev = torch.device(device)
    sr = int(codec.sample_rate)
    if sr != 16000:
        raise ValueError(f"evaluation expects a 16 kHz codec (PESQ-WB); codec {codec.codec_id} is {sr} Hz")
    Q, K = int(codec.num_codebooks), int(codec.codebook_size)
    counts = np.zeros((Q, K), np.int64)
    rows, enc_t, dec_t, audio_s = [], 0.0, 0.0, 0.0
    pesq_failed = 0
    for key, x in eval_clips(data_uri, max_samples, max_seconds, use_dialog, sr):
        wav = torch.from_numpy(x)[None, None].to(dev)
        _sync(dev)
        t0 = time.perf_counter()
        codes = codec.encode(wav)
        _sync(dev)
        t1 = time.perf_counter()
        y = codec.decode(codes)
        _sync(dev)
        t2 = time.perf_counter()
        enc_t += t1 - t0
        dec_t += t2 - t1
        audio_s += len(x) / sr
        c = codes[0].cpu().numpy()
        for q in range(min(Q, c.shape[0])):
            counts[q] += np.bincount(c[q], minlength=K)[:K]
        est = y[0, 0, : len(x)].float().cpu().numpy()
        est = np.pad(est, (0, len(x) - len(est)))
        r = {"key": key, "seconds": round(len(x) / sr, 3),
             "mel_distance": mel_distance(torch.from_numpy(est), torch.from_numpy(x), sr),
             "si_sdr": si_sdr(est, x), "stoi": float(stoi(x, est, sr, extended=False))}
        try:
            r["pesq"] = float(pesq(sr, x, est, "wb"))
        except Exception:  # silent or too short clips: pesq raises
            r["pesq"] = None
            pesq_failed += 1
        rows.append(r)
    usage, perplexity = [], []
    for q in range(Q):
        n = counts[q].sum()
        p = counts[q][counts[q] > 0] / max(n, 1)
        usage.append(round(float((counts[q] > 0).mean()), 4))
        perplexity.append(round(float(math.exp(-(p * np.log(p)).sum())) if n else 0.0, 2))

    def mean(k: str) -> float | None:
        v = [r[k] for r in rows if r.get(k) is not None]
        return round(float(np.mean(v)), 4) if v else None

    return {
        "codec_id": codec.codec_id, "clips": len(rows), "seconds": round(audio_s, 3), "device": str(dev),
        "mel_distance": mean("mel_distance"), "si_sdr": mean("si_sdr"), "stoi": mean("stoi"), "pesq_wb": mean("pesq"),
        "pesq_failed": pesq_failed,
        "bitrate_bps": round(float(codec.frame_rate) * Q * math.log2(K), 1),
        "frame_rate": float(codec.frame_rate), "num_codebooks": Q, "codebook_size": K,
        "codebook_usage": usage, "codebook_perplexity": perplexity,
        "encode_x_realtime": round(audio_s / max(enc_t, 1e-9), 1),
        "decode_x_realtime": round(audio_s / max(dec_t, 1e-9), 1),
        "encode_s": round(enc_t, 4), "decode_s": round(dec_t, 4),
        "per_clip": rows,
    }


def render(res: dict) -> str:
    lines = [f"codec {res['codec_id']}  ({res['clips']} clips, {res['seconds']:.1f} s, {res['device']})"]
    for k, label in (("mel_distance", "mel distance (lower is better)"), ("si_sdr", "SI-SDR dB"), ("stoi", "STOI"),
                     ("pesq_wb", "PESQ-WB"), ("bitrate_bps", "bitrate bit/s"), ("encode_x_realtime", "encode x realtime"),
                     ("decode_x_realtime", "decode x realtime")):
        v = res.get(k)
        lines.append(f"  {label:<32} {'n/a' if v is None else v}")
    if res.get("pesq_failed"):
        lines.append(f"  {'PESQ not scored':<32} {res['pesq_failed']} clip(s)")
    lines.append(f"  {'level':<8}{'usage':>8}{'perplexity':>12}")
    for q, (u, p) in enumerate(zip(res["codebook_usage"], res["codebook_perplexity"])):
        lines.append(f"  {q:<8}{u:>8.3f}{p:>12.1f}")
    return "\n".join(lines)


def write_json(res: dict, uri: str) -> None:
    storage.write_text(uri, json.dumps(res, indent=2, ensure_ascii=False) + "\n")
