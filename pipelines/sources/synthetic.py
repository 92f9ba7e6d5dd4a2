"""Synthetic Telugu dialogs: the embedded default source.

Telugu question/answer conversations (a bundled set written for this project, the user's own JSONL, or
``matalu texts generate`` output) are spoken by voices drawn from a pool (``pipelines/tts``: espeak-ng, MMS-TTS,
any local TTS program) and assembled into two-speaker dialogs: the user asks, the system answers, with gaps,
overlaps and backchannels drawn from the distributions in :class:`SyntheticConfig`. Each dialog is a 2-channel WAV,
channel 0 = system voice, channel 1 = user voice (stems kept apart, as moshi-finetune wants them), and the
``Recording`` row carries the true turn list; each turn's ``speaker`` is the voice id, which names the TTS backend
and its parameters (``espeak:te+f3:p58:s160``, ``mms:mms-tts-tel:v2:...``), and its ``text`` the question or answer.

Synthesis runs as Ray tasks (``dialogs_per_task`` dialogs each) when Ray is up (``matalu ingest`` starts it first),
else on a few local threads. Everything is seeded per dialog: the same settings give the same audio bytes, however
the work is spread. An utterance a voice cannot speak is a reject (stage ``tts``) and its exchange is left out; a
dialog with no exchange left is rejected whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile as sf

from manifests.rows import Recording, Reject, Turn
from pipelines.tts.normalize import to_spoken
from pipelines.tts.voices import ESPEAK_RATE, TTSError, Voice, espeak, make_pool

NAME = "synthetic"
LICENSE = "CC0-1.0"
BUNDLED_TEXTS = Path(__file__).parent / "data" / "telugu_qa.jsonl"
SAMPLE_RATE = ESPEAK_RATE  # dialogs are written at 22.05 kHz; other voices are resampled; ingestion makes 16 kHz
BACKCHANNELS = ("ఊ", "అవును", "సరే", "అలాగా", "హా")
INFO = {
    "name": NAME,
    "hours": "configurable (default ~0.1)",
    "license": LICENSE,
    "access": "embedded",
    "kind": "dialog + mono",
    "description": "Telugu Q/A dialogs spoken by a pool of TTS voices (espeak-ng; MMS-TTS or any TTS command)",
}
USES_RAY = True  # ingestion starts Ray before download(), so synthesis spreads over the cluster


@dataclass
class Dist:
    """A timing distribution in seconds (or a fraction, for where a backchannel falls), clipped to [lo, hi].

    ``uniform``: a..b; ``normal``: mean a, sd b; ``lognormal``: median a, sigma b. In YAML or ``--option`` either a
    mapping ``{kind: lognormal, a: 0.5, b: 0.4, lo: 0.1, hi: 2.0}`` or ``[low, high]`` (uniform)."""

    kind: str = "uniform"
    a: float = 0.0
    b: float = 1.0
    lo: float = 0.0
    hi: float = 10.0

    @classmethod
    def of(cls, v: Any, where: str) -> "Dist":
        if isinstance(v, Dist):
            d = v
        elif isinstance(v, (list, tuple)) and len(v) == 2:
            d = cls("uniform", float(v[0]), float(v[1]), float(v[0]), float(v[1]))
        elif isinstance(v, dict):
            unknown = set(v) - {"kind", "a", "b", "lo", "hi"}
            if unknown:
                raise ValueError(f"synthetic source: {where} has unknown key(s) {sorted(unknown)}; use kind, a, b, lo, hi")
            d = cls(**{k: (x if k == "kind" else float(x)) for k, x in v.items()})
        else:
            raise ValueError(f"synthetic source: {where} must be [low, high] or {{kind, a, b, lo, hi}}, got {v!r}")
        if d.kind not in ("uniform", "normal", "lognormal") or d.lo > d.hi or (d.kind != "uniform" and d.b < 0):
            raise ValueError(f"synthetic source: {where} = {v!r}: kind is uniform, normal or lognormal, lo <= hi, b >= 0")
        return d

    def draw(self, rng: random.Random) -> float:
        if self.kind == "uniform":
            x = rng.uniform(self.a, self.b)
        elif self.kind == "normal":
            x = rng.gauss(self.a, self.b)
        else:
            x = self.a * math.exp(rng.gauss(0.0, self.b))
        return min(self.hi, max(self.lo, x))


@dataclass
class SyntheticConfig:
    n_dialogs: int = 24
    seed: int = 0
    min_exchanges: int = 3
    max_exchanges: int = 5
    # voice pool specs (pipelines/tts/voices.py): "[N*]espeak[:LANG]", "[N*]mms:DIR", "[N*]command:PROGRAM ... {out}"
    voices: list[str] = field(default_factory=lambda: ["2*espeak"])
    texts: str | None = None  # JSONL of {"q": ..., "a": ...} (optionally "turns": [{"q", "a"}, ...]); default: bundled
    gap_s: Any = (0.25, 0.9)  # silence before a turn (Dist)
    overlap_prob: float = 0.15  # chance a turn starts before the previous one ends ...
    overlap_s: Any = (0.1, 0.4)  # ... by this much (Dist; at most half the previous turn)
    backchannel_prob: float = 0.0  # chance the user says "ఊ"/"అవును"/... during a system turn ...
    backchannel_at: Any = (0.3, 0.7)  # ... at this fraction of the way through it (Dist)
    noise_dbfs: float = -60.0
    dialogs_per_task: int = 8  # dialogs per Ray task (does not change the output)
    use_ray: bool | None = None  # None: Ray tasks when Ray is up; False: local threads (does not change the output)

    def __post_init__(self) -> None:
        self.gap_s = Dist.of(self.gap_s, "gap_s")
        self.overlap_s = Dist.of(self.overlap_s, "overlap_s")
        self.backchannel_at = Dist.of(self.backchannel_at, "backchannel_at")
        if isinstance(self.voices, str):
            self.voices = [self.voices]
        if self.min_exchanges < 1 or self.max_exchanges < self.min_exchanges:
            raise ValueError("synthetic source: need 1 <= min_exchanges <= max_exchanges")
        if not (0 <= self.overlap_prob <= 1 and 0 <= self.backchannel_prob <= 1):
            raise ValueError("synthetic source: overlap_prob and backchannel_prob are probabilities (0..1)")
        if self.n_dialogs < 0 or self.dialogs_per_task < 1:
            raise ValueError("synthetic source: n_dialogs >= 0 and dialogs_per_task >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, backends: dict) -> str:
        d = self.to_dict()
        for k in ("dialogs_per_task", "use_ray"):  # how the work is spread, not what it makes
            d.pop(k)
        d["texts_sha256"] = hashlib.sha256(Path(self.texts or BUNDLED_TEXTS).read_bytes()).hexdigest()
        d["backends"] = {k: b.fingerprint() for k, b in sorted(backends.items())}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def speak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng -> float32 mono at 22.05 kHz (trimmed); tests make their speech with it."""
    return espeak(text, voice, speed, pitch)


def load_pairs(path: str | Path | None = None) -> list[dict]:
    """Conversations from a JSONL file: each line needs non-empty "q" and "a"; an optional "turns" list of
    {"q", "a"} gives a multi-turn conversation (spoken in order). Returns {"id", "q", "a", "exchanges"}."""
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
        turns = d.get("turns")
        if turns is not None and (not isinstance(turns, list) or not turns or not all(
                isinstance(t, dict) and str(t.get("q", "")).strip() and str(t.get("a", "")).strip() for t in turns)):
            raise ValueError(f'{p}:{n}: "turns" must be a list of {{"q": ..., "a": ...}} with non-empty texts')
        exchanges = [(str(t["q"]).strip(), str(t["a"]).strip()) for t in turns] if turns else \
            [(str(d["q"]).strip(), str(d["a"]).strip())]
        pairs.append({"id": str(d.get("id") or f"line{n}"), "q": str(d["q"]).strip(), "a": str(d["a"]).strip(),
                      "exchanges": exchanges})
    if not pairs:
        raise ValueError(f"{p} holds no question/answer pairs")
    return pairs


# -- one dialog -----------------------------------------------------------------------------------------------
class _Speaker:
    """Speaks text in a voice at SAMPLE_RATE; whatever goes wrong is a TTSError, never a crash."""

    def __init__(self, backends: dict) -> None:
        self.backends = backends

    def __call__(self, text: str, voice: Voice) -> np.ndarray:
        from storage.audio import resample

        spoken = to_spoken(text)
        if not spoken.strip():
            raise TTSError("unspeakable_text", "nothing to say after normalisation")
        try:
            x, sr = self.backends[voice.backend].speak(spoken, voice)
        except TTSError:
            raise
        except Exception as e:  # a backend's own failure is this utterance's reject, not the run's end
            raise TTSError("tts_failed", f"{voice.backend}: {type(e).__name__}: {e}") from None
        x = resample(np.asarray(x, np.float32)[None], sr, SAMPLE_RATE)[0] if sr != SAMPLE_RATE else x
        if not x.size or not np.isfinite(x).all():
            raise TTSError("empty_audio", f"{voice.id} produced no usable audio")
        return x


def _prosody(system: Voice, user: Voice, rng: random.Random) -> tuple[Voice, Voice, dict]:
    """espeak voices get this dialog's pitch and rate, drawn within their ranges (user pitch, system pitch, user rate,
    system rate: the order the two-voice source always drew them in, so its default output is unchanged)."""
    from pipelines.tts.voices import EspeakBackend

    got: dict = {}
    pitch, speed = {}, {}
    for key in ("pitch", "speed"):
        for role, v in (("user", user), ("system", system)):
            if v.backend.partition(":")[0] == "espeak":
                (pitch if key == "pitch" else speed)[role] = rng.randint(*v.param(key))
    if "user" in pitch:
        user = EspeakBackend.in_dialog(user, pitch["user"], speed["user"])
        got.update(user_pitch=pitch["user"], user_speed=speed["user"])
    if "system" in pitch:
        system = EspeakBackend.in_dialog(system, pitch["system"], speed["system"])
        got.update(system_pitch=pitch["system"], system_speed=speed["system"])
    return system, user, got


def _dialog(idx: int, pairs: list[dict], cfg: SyntheticConfig, voices: list[Voice], say: _Speaker):
    """(stems or None, turns, meta, rejects) of dialog ``idx``; every draw comes from the dialog's own seed."""
    rng = random.Random(f"{cfg.seed}:{idx}")
    rid = f"syn-{cfg.seed:03d}-{idx:05d}"
    n_ex = rng.randint(cfg.min_exchanges, cfg.max_exchanges)
    exchanges: list[tuple[str, int, str, str]] = []  # (pair id, k, q, a)
    for item in rng.sample(pairs, k=min(n_ex, len(pairs))):
        for k, (q, a) in enumerate(item["exchanges"]):
            if len(exchanges) < n_ex:
                exchanges.append((item["id"], k, q, a))
    # two distinct voices per dialog, varying across dialogs; a pool of exactly two keeps one voice per role
    # (voice 0 the system, voice 1 the user), as the two-voice source always did
    system, user = voices if len(voices) == 2 else rng.sample(voices, 2)
    system, user, prosody = _prosody(system, user, rng)
    rejects: list[Reject] = []
    pieces: list[tuple[str, Voice, str, np.ndarray]] = []
    for pid, k, q, a in exchanges:
        try:
            pair = [("user", user, q, say(q, user)), ("system", system, a, say(a, system))]
        except TTSError as e:
            rejects.append(Reject(item=f"{rid}/{pid}.{k}", stage="tts", reason=e.reason, detail=e.detail,
                                  source=NAME, recording_id=rid))
            continue
        pieces += pair
    meta = {"pairs": [f"{pid}.{k}" for pid, k, _, _ in exchanges], "voices": {"user": user.id, "system": system.id},
            "tts": {"user": user.backend, "system": system.backend}, **prosody}
    if not pieces:
        rejects.append(Reject(item=rid, stage="tts", reason="no_speakable_exchange",
                              detail=f"none of its {len(exchanges)} exchanges could be spoken by {user.id} / {system.id}",
                              source=NAME, recording_id=rid))
        return None, [], meta, rejects
    t = rng.uniform(0.3, 0.8)
    placed = []
    for k, (role, voice, text, audio) in enumerate(pieces):
        if k > 0:
            if rng.random() < cfg.overlap_prob:
                t -= min(cfg.overlap_s.draw(rng), 0.5 * len(placed[-1][4]) / SAMPLE_RATE)
            else:
                t += cfg.gap_s.draw(rng)
        placed.append((role, voice, text, t, audio))
        t += len(audio) / SAMPLE_RATE
    backchannels = []
    for role, _, _, start, audio in list(placed):
        if role != "system" or not cfg.backchannel_prob or rng.random() >= cfg.backchannel_prob:
            continue
        text = rng.choice(BACKCHANNELS)
        at = start + cfg.backchannel_at.draw(rng) * len(audio) / SAMPLE_RATE
        try:
            bc = say(text, user)
        except TTSError as e:
            rejects.append(Reject(item=f"{rid}/backchannel@{at:.2f}", stage="tts", reason=e.reason, detail=e.detail,
                                  source=NAME, recording_id=rid))
            continue
        if at + len(bc) / SAMPLE_RATE < start + len(audio) / SAMPLE_RATE:  # within the system turn
            backchannels.append(("user", user, text, at, bc))
    placed += backchannels
    total = int((t + rng.uniform(0.3, 0.8)) * SAMPLE_RATE)
    stems = np.zeros((2, total), dtype=np.float32)  # ch0 system, ch1 user
    turns = []
    for role, voice, text, start, audio in sorted(placed, key=lambda p: p[3]):
        ch = 0 if role == "system" else 1
        a = int(round(start * SAMPLE_RATE))
        stems[ch, a: a + len(audio)] += audio[: max(0, total - a)]
        turns.append(Turn(role=role, speaker=voice.id, start_s=round(a / SAMPLE_RATE, 4),
                          end_s=round((a + len(audio)) / SAMPLE_RATE, 4), text=text))
    nrng = np.random.default_rng(rng.randrange(2**32))
    stems += (10 ** (cfg.noise_dbfs / 20) * nrng.standard_normal(stems.shape)).astype(np.float32)
    meta["backchannels"] = len(backchannels)
    return np.clip(stems, -1, 1), turns, meta, rejects


def synthesize(indices: list[int], pairs: list[dict], cfg: SyntheticConfig, audio_dir: str) -> list[dict]:
    """Synthesize dialogs ``indices`` into ``audio_dir``: one row per dialog (its recording, or only its rejects)."""
    voices, backends = make_pool(cfg.voices)
    say = _Speaker(backends)
    rows = []
    for i in indices:
        stems, turns, meta, rejects = _dialog(i, pairs, cfg, voices, say)
        rid = f"syn-{cfg.seed:03d}-{i:05d}"
        row = {"index": i, "recording_id": rid, "rejects": [r.to_dict() for r in rejects], **meta}
        if stems is not None:
            sf.write(Path(audio_dir) / f"{rid}.wav", stems.T, SAMPLE_RATE, subtype="PCM_16")
            row.update(file=f"audio/{rid}.wav", turns=[t.to_dict() for t in turns])
        rows.append(row)
    return rows


def _synthesize_task(indices, pairs, cfg_dict, audio_dir):
    return synthesize(indices, pairs, SyntheticConfig(**cfg_dict), audio_dir)


def _run(cfg: SyntheticConfig, pairs: list[dict], audio_dir: Path, progress) -> list[dict]:
    chunks = [list(range(i, min(i + cfg.dialogs_per_task, cfg.n_dialogs)))
              for i in range(0, cfg.n_dialogs, cfg.dialogs_per_task)]
    rows: list[dict] = []
    use_ray = cfg.use_ray
    if use_ray is None:
        import ray

        use_ray = ray.is_initialized()
    if use_ray:
        import ray

        from jobs.cluster import job_resources

        task = ray.remote(num_cpus=1, resources=job_resources() or None, max_retries=3)(_synthesize_task)
        pairs_ref = ray.put(pairs)
        pending = [task.remote(c, pairs_ref, cfg.to_dict(), str(audio_dir)) for c in chunks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            got = ray.get(done[0])
            rows += got
            if progress:
                progress(len(got))
    else:
        def one(c):
            got = synthesize(c, pairs, cfg, str(audio_dir))
            if progress:
                progress(len(got))
            return got

        with ThreadPoolExecutor(max_workers=4) as ex:  # one dialog per call: all four threads busy
            for got in ex.map(one, [[i] for c in chunks for i in c]):
                rows += got
    return sorted(rows, key=lambda r: r["index"])


def check_options(progress=None, **options: object) -> tuple[SyntheticConfig, dict]:
    """The config and voice backends of ``options``; a one-sentence error for a bad option, voice spec, missing
    model folder or a pool of fewer than two voices (ingestion calls it before starting Ray)."""
    known = set(SyntheticConfig.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"synthetic source: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return _pool(SyntheticConfig(**options))  # type: ignore[arg-type]


def _pool(cfg: SyntheticConfig) -> tuple[SyntheticConfig, dict]:
    voices, backends = make_pool(cfg.voices)
    if len(voices) < 2:
        raise ValueError(f"synthetic source: the voice pool {cfg.voices} has {len(voices)} voice; user and system need "
                         "two (e.g. --voices 8*espeak)")
    return cfg, backends


def download(target: str | Path, *, config: SyntheticConfig | None = None, progress=None, **options: object) -> Path:
    """'Download' = synthesize the dialogs into ``target`` (skipped when ``.completed`` matches the settings).

    ``options`` are :class:`SyntheticConfig` fields (``n_dialogs``, ``seed``, ``texts``, ``voices``, ...)."""
    # a bad option, spec or a missing model folder fails here, before any work
    cfg, backends = _pool(config) if config is not None else check_options(**options)
    target = Path(target)
    marker = target / ".completed"
    fp = cfg.fingerprint(backends)
    if marker.exists() and marker.read_text().strip() == fp:
        return target
    pairs = load_pairs(cfg.texts)
    audio_dir = target / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for old in audio_dir.glob("*.wav"):
        old.unlink()
    rows = _run(cfg, pairs, audio_dir, progress)
    (target / "dialogs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    marker.write_text(fp + "\n")
    return target


def prepare(downloaded: str | Path, **_: object) -> Iterator[Recording | Reject]:
    root = Path(downloaded)
    index = root / "dialogs.jsonl"
    if not (root / ".completed").exists() or not index.exists():
        raise FileNotFoundError(f"{root} holds no finished synthetic set; run download() first")
    for line in index.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        for r in d.get("rejects", []):
            yield Reject.from_dict(r)
        if "file" not in d:
            continue
        turns = [Turn.from_dict(t) for t in d["turns"]]
        extra = {k: d[k] for k in ("pairs", "voices", "tts", "backchannels") if k in d}
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
            extra=json.dumps(extra, ensure_ascii=False, sort_keys=True),
        )
