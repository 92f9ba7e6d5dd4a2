"""Synthetic Telugu dialogs: the embedded default source.

Telugu question/answer pairs (a bundled set written for this project, or the user's own JSONL) are spoken by
two espeak-ng Telugu voices and assembled into two-speaker dialogs: the user asks, the system answers, with
natural gaps and some short overlaps. Each dialog is a 2-channel WAV, channel 0 = system voice, channel 1 = user
voice (stems kept apart, as moshi-finetune wants them), and the ``Recording`` row carries the true turn list.
Everything is seeded: the same settings give the same audio bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from manifests.rows import Recording, Turn

NAME = "synthetic"
LICENSE = "CC0-1.0"
BUNDLED_TEXTS = Path(__file__).parent / "data" / "telugu_qa.jsonl"
SAMPLE_RATE = 22050  # espeak-ng's native rate; ingestion resamples to 16 kHz
INFO = {
    "name": NAME,
    "hours": "configurable (default ~0.1)",
    "license": LICENSE,
    "access": "embedded",
    "kind": "dialog + mono",
    "description": "Telugu Q/A dialogs spoken by two espeak-ng Telugu voices",
}


@dataclass
class SyntheticConfig:
    n_dialogs: int = 24
    seed: int = 0
    min_exchanges: int = 3
    max_exchanges: int = 5
    user_voice: str = "te+f3"
    system_voice: str = "te"
    texts: str | None = None  # JSONL of {"q": ..., "a": ...}; default: the bundled pairs
    gap_s: tuple[float, float] = (0.25, 0.9)
    overlap_prob: float = 0.15
    overlap_s: tuple[float, float] = (0.1, 0.4)
    noise_dbfs: float = -60.0

    def fingerprint(self) -> str:
        d = asdict(self)
        d["texts_sha256"] = hashlib.sha256(Path(self.texts or BUNDLED_TEXTS).read_bytes()).hexdigest()
        d["espeak"] = espeak_version()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if not exe:
        raise RuntimeError(
            "espeak-ng is not installed; the synthetic source needs it (`apt-get install espeak-ng`, or `make setup`)"
        )
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def load_pairs(path: str | Path | None = None) -> list[dict]:
    """Question/answer pairs from a JSONL file; each line needs non-empty "q" and "a"."""
    p = Path(path) if path else BUNDLED_TEXTS
    if not p.exists():
        raise FileNotFoundError(f"texts file {p} does not exist (expected JSONL lines like {{\"q\": ..., \"a\": ...}})")
    pairs = []
    from pipelines.sources.listing import read_lines  # BOM, physical line numbers, non-UTF-8 named by line

    for n, line in read_lines(p):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not valid JSON ({e.msg})") from e
        if not isinstance(d, dict) or not str(d.get("q", "")).strip() or not str(d.get("a", "")).strip():
            raise ValueError(f'{p}:{n}: each line needs non-empty "q" and "a" fields')
        pairs.append({"id": str(d.get("id") or f"line{n}"), "q": str(d["q"]).strip(), "a": str(d["a"]).strip()})
    if not pairs:
        raise ValueError(f"{p} holds no question/answer pairs")
    return pairs


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng -> float32 mono at 22.05 kHz."""
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    x, sr = sf.read(io.BytesIO(out), dtype="float32")
    if sr != SAMPLE_RATE:
        raise RuntimeError(f"espeak-ng produced {sr} Hz audio, expected {SAMPLE_RATE}")
    # espeak pads each utterance with silence; trim it so our gaps are the gaps
    nz = np.flatnonzero(np.abs(x) > 1e-3)
    return x[nz[0] : nz[-1] + 1] if nz.size else x


def _dialog(idx: int, pairs: list[dict], cfg: SyntheticConfig) -> tuple[np.ndarray, list[Turn], dict]:
    rng = random.Random(f"{cfg.seed}:{idx}")
    n_ex = rng.randint(cfg.min_exchanges, cfg.max_exchanges)
    chosen = rng.sample(pairs, k=min(n_ex, len(pairs)))
    user_pitch, sys_pitch = rng.randint(55, 75), rng.randint(30, 50)
    user_speed, sys_speed = rng.randint(140, 165), rng.randint(150, 175)
    user_spk, sys_spk = f"espeak-{cfg.user_voice}", f"espeak-{cfg.system_voice}"
    pieces: list[tuple[str, str, str, np.ndarray]] = []
    for pair in chosen:
        pieces.append(("user", user_spk, pair["q"], speak(pair["q"], cfg.user_voice, user_speed, user_pitch)))
        pieces.append(("system", sys_spk, pair["a"], speak(pair["a"], cfg.system_voice, sys_speed, sys_pitch)))
    t = rng.uniform(0.3, 0.8)
    placed = []
    for k, (role, spk, text, audio) in enumerate(pieces):
        if k > 0:
            if rng.random() < cfg.overlap_prob:
                t -= min(rng.uniform(*cfg.overlap_s), 0.5 * len(placed[-1][4]) / SAMPLE_RATE)
            else:
                t += rng.uniform(*cfg.gap_s)
        placed.append((role, spk, text, t, audio))
        t += len(audio) / SAMPLE_RATE
    total = int((t + rng.uniform(0.3, 0.8)) * SAMPLE_RATE)
    stems = np.zeros((2, total), dtype=np.float32)  # ch0 system, ch1 user
    turns = []
    for role, spk, text, start, audio in placed:
        ch = 0 if role == "system" else 1
        a = int(round(start * SAMPLE_RATE))
        stems[ch, a : a + len(audio)] += audio
        turns.append(Turn(role=role, speaker=spk, start_s=round(a / SAMPLE_RATE, 4),
                          end_s=round((a + len(audio)) / SAMPLE_RATE, 4), text=text))
    nrng = np.random.default_rng(rng.randrange(2**32))
    stems += (10 ** (cfg.noise_dbfs / 20) * nrng.standard_normal(stems.shape)).astype(np.float32)
    meta = {"pairs": [p["id"] for p in chosen], "user_pitch": user_pitch, "system_pitch": sys_pitch}
    return np.clip(stems, -1, 1), turns, meta


def download(target: str | Path, *, config: SyntheticConfig | None = None, progress=None, **options: object) -> Path:
    """'Download' = synthesize the dialogs into ``target`` (skipped when ``.completed`` matches the settings).

    ``options`` are :class:`SyntheticConfig` fields (``n_dialogs``, ``seed``, ``texts``, voices, ...)."""
    if config is None:
        known = set(SyntheticConfig.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"synthetic source: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = SyntheticConfig(**options)  # type: ignore[arg-type]
    cfg = config
    target = Path(target)
    marker = target / ".completed"
    fp = cfg.fingerprint()
    if marker.exists() and marker.read_text().strip() == fp:
        return target
    pairs = load_pairs(cfg.texts)
    if cfg.min_exchanges < 1 or cfg.max_exchanges < cfg.min_exchanges:
        raise ValueError("synthetic source: need 1 <= min_exchanges <= max_exchanges")
    audio_dir = target / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for old in audio_dir.glob("*.wav"):
        old.unlink()

    def one(i: int) -> dict:
        stems, turns, meta = _dialog(i, pairs, cfg)
        rid = f"syn-{cfg.seed:03d}-{i:05d}"
        path = audio_dir / f"{rid}.wav"
        sf.write(path, stems.T, SAMPLE_RATE, subtype="PCM_16")
        if progress:
            progress(1)
        return {"recording_id": rid, "file": f"audio/{rid}.wav", "turns": [t.to_dict() for t in turns], **meta}

    with ThreadPoolExecutor(max_workers=4) as ex:
        rows = list(ex.map(one, range(cfg.n_dialogs)))
    (target / "dialogs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    marker.write_text(fp + "\n")
    return target


def prepare(downloaded: str | Path, **_: object) -> Iterator[Recording]:
    root = Path(downloaded)
    index = root / "dialogs.jsonl"
    if not (root / ".completed").exists() or not index.exists():
        raise FileNotFoundError(f"{root} holds no finished synthetic set; run download() first")
    for line in index.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        turns = [Turn.from_dict(t) for t in d["turns"]]
        yield Recording(
            recording_id=d["recording_id"],
            source=NAME,
            uri=str((root / d["file"]).resolve()),
            channels=2,
            sample_rate=SAMPLE_RATE,
            speaker_id="",
            text="\n".join(t.text for t in turns),
            language="te",
            license=LICENSE,
            split="train",
            turns=turns,
            channel_roles=["system", "user"],
        )
