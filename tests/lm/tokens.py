"""Token shards written directly (the real layout of ``matalu encode``'s output) for loader and training tests.

Every sample's codes say where they came from: row ``r`` of frame ``t`` of sample number ``n`` holds
``(n * 7 + r * 3 + t) % K`` (user rows of a dialog the same pattern shifted by ``K // 2``), so a test can find a
sample's frames again inside packed windows."""

from __future__ import annotations

import io
import json

import numpy as np

import storage


def sample_codes(n: int, frames: int, Q: int, K: int, channels: int) -> np.ndarray:
    t = np.arange(frames)[None, :]
    rows = np.arange(Q)[:, None]
    sys_ = (n * 7 + rows * 3 + t) % K
    if channels == 1:
        return sys_.astype(np.int16)
    return np.concatenate([sys_, (sys_ + K // 2) % K]).astype(np.int16)


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def write_token_shards(root: str, shard_sizes: list[int], *, Q: int = 4, K: int = 64, frame_rate: float = 12.5,
                       frames: tuple[int, int] = (20, 90), dialog_every: int = 2, seed: int = 0,
                       codec_id: str = "testcodec", source: str = "synthetic", text: bool = True,
                       license: str = "CC-BY-4.0") -> list[dict]:
    """Shards of ``shard_sizes[i]`` samples under ``root/<source>/<kind>/``; every ``dialog_every``-th sample is a
    dialog (2 channels, turns), the rest mono. Returns each sample's JSON (with ``codes``: the int16 array)."""
    rng = np.random.default_rng(seed)
    out = []
    n = 0
    for si, size in enumerate(shard_sizes):
        kind = "dialog" if dialog_every and si % dialog_every == 0 else "mono"
        uri = storage.join(root, source, kind, f"{source}-{si:05d}-000.tar")
        with storage.ShardWriter(lambda part, u=uri: u, max_samples=10_000) as w:
            for _ in range(size):
                f = int(rng.integers(frames[0], frames[1] + 1))
                ch = 2 if kind == "dialog" else 1
                codes = sample_codes(n, f, Q, K, ch)
                dur = round(f / frame_rate, 4)
                key = f"s{n:05d}"
                meta = {"sample_id": key, "kind": kind, "source": source, "codec_id": codec_id, "frames": f,
                        "frame_rate": frame_rate, "num_codebooks": Q, "codebook_size": K,
                        "codes_shape": list(codes.shape), "duration_s": dur, "license": license,
                        "recording_id": f"rec{n}", "channels": ch, "sample_rate": 16000}
                if text:
                    if kind == "dialog":
                        half = round(dur / 2, 3)
                        meta["turns"] = [
                            {"role": "user", "speaker": "u", "start_s": 0.0, "end_s": half, "text": "మీరు ఎలా ఉన్నారు"},
                            {"role": "system", "speaker": "s", "start_s": half, "end_s": dur, "text": "నేను బాగున్నాను"},
                        ]
                        meta["text"] = "మీరు ఎలా ఉన్నారు నేను బాగున్నాను"
                    else:
                        meta["text"] = "తెలుగు భాష చాలా అందమైనది"
                w.write(key, {"codes.npy": npy(codes), "json": json.dumps(meta, ensure_ascii=False).encode()})
                out.append({**meta, "codes": codes})
                n += 1
    return out
