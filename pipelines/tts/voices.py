"""The TTS backend interface, the voice pool, and the two backends without model files (espeak-ng, a command).

A pool is built from specs ``[N*]BACKEND[:ARG]``:

* ``espeak`` / ``12*espeak`` / ``12*espeak:te``: espeak-ng's Telugu voice (or ARG) with N speakers, each a voice
  variant (m1..m7, f1..f5, klatt, ...) with its own pitch and rate ranges; ``espeak:te+f4,te+m3`` lists the
  espeak-ng voices themselves (one speaker each; in a pool of two, the first is the system);
* ``4*mms:DIR``: Meta's MMS-TTS (a transformers ``VitsModel`` + ``VitsTokenizer`` in DIR, e.g. the files of
  facebook/mms-tts-tel); N speakers that differ in noise scales, speaking rate and sampling seed
  (``pipelines/tts/mms.py``);
* ``command:TEMPLATE``: any local program that writes a WAV: the template is split like a shell line (no shell
  runs it) and ``{out}`` (the WAV to write), ``{text}`` (the text; without it the text goes to stdin) and
  ``{voice}`` (0..N-1, needed when N > 1) are filled in per utterance.

A voice's ``id`` names its backend and parameters (``espeak:te+f3:p58:s160``), so the id alone says how a turn was
spoken. Whatever a voice cannot say raises :class:`TTSError` (a reason and a sentence), which the synthetic source
records as a reject; it never stops the run."""

from __future__ import annotations

import hashlib
import random
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TTSError(Exception):
    """An utterance a voice could not speak: ``reason`` (unspeakable_text, tts_failed, empty_audio) and why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Voice:
    id: str
    backend: str  # the pool key of the backend that speaks it
    params: tuple[tuple[str, float | int | str], ...] = ()

    def param(self, key: str):
        return dict(self.params)[key]


@dataclass(frozen=True)
class VoiceSpec:
    backend: str  # espeak | mms | command
    arg: str
    count: int

    @property
    def key(self) -> str:
        return f"{self.backend}:{self.arg}" if self.arg else self.backend


class Backend:
    """What every TTS backend provides."""

    name = ""

    def voices(self, count: int) -> list[Voice]:  # deterministic: the same count gives the same voices
        raise NotImplementedError

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        """float32 mono audio and its sample rate; :class:`TTSError` when the voice cannot say ``text``."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """What this backend's audio depends on besides text and voice (program version, model files)."""
        raise NotImplementedError


def parse_spec(spec: str) -> VoiceSpec:
    s = spec.strip()
    count = 0
    head, star, rest = s.partition("*")
    if star and head.strip().isdigit():
        count, s = int(head), rest.strip()
    name, _, arg = s.partition(":")
    name = name.strip()
    defaults = {"espeak": 8, "mms": 4, "command": 1}
    if name not in defaults:
        raise ValueError(f"voice spec {spec!r}: expected [N*]espeak[:LANG], [N*]mms:DIR or [N*]command:\"PROGRAM ... "
                         "{out}\"")
    if name in ("mms", "command") and not arg.strip():
        raise ValueError(f"voice spec {spec!r}: {name} needs {'a model folder (mms:DIR)' if name == 'mms' else 'a command'}")
    if name == "espeak" and ("," in arg or "+" in arg):  # an explicit list of espeak-ng voices: one each
        listed = len([x for x in arg.split(",") if x.strip()])
        if count and count != listed:
            raise ValueError(f"voice spec {spec!r}: {count}* but {listed} voices listed; drop the count")
        count = listed
    n = count or defaults[name]
    if n < 1:
        raise ValueError(f"voice spec {spec!r}: the voice count must be at least 1")
    return VoiceSpec(name, arg.strip(), n)


def make_backend(spec: VoiceSpec) -> Backend:
    if spec.backend == "espeak":
        return EspeakBackend(spec.arg or "te")
    if spec.backend == "mms":
        from pipelines.tts.mms import MmsBackend

        return MmsBackend(spec.arg)
    return CommandBackend(spec.arg, spec.count)


def make_pool(specs: list[str] | tuple[str, ...]) -> tuple[list[Voice], dict[str, Backend]]:
    """The voices of all ``specs`` (in order) and the backends that speak them, keyed by ``Voice.backend``."""
    if not specs:
        raise ValueError("the voice pool is empty: give at least one voice spec, e.g. espeak")
    voices: list[Voice] = []
    backends: dict[str, Backend] = {}
    for s in specs:
        spec = parse_spec(s)
        if spec.key in backends:
            raise ValueError(f"voice spec {s!r} names {spec.key} twice; give one spec with a count (N*{spec.key})")
        b = backends[spec.key] = make_backend(spec)
        voices += [Voice(v.id, spec.key, v.params) for v in b.voices(spec.count)]
    if len({v.id for v in voices}) != len(voices):
        raise AssertionError("voice ids must be distinct")
    return voices, backends


def trim(x: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """Cut leading/trailing near-silence so the dialog's gaps are the gaps."""
    nz = np.flatnonzero(np.abs(x) > floor)
    return x[nz[0]: nz[-1] + 1] if nz.size else x[:0]


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    from storage.audio import decode_audio

    x, sr = decode_audio(data)
    return (x.mean(axis=0) if x.shape[0] > 1 else x[0]).astype(np.float32), sr


# -- espeak-ng ------------------------------------------------------------------------------------------------
ESPEAK_RATE = 22050
# variants that sound most like people first ("" = the language's own voice); voice k uses VARIANTS[k % len], with a
# pitch in the female or male range of the variant, so the default pool of two is a clear male/female pair
VARIANTS = ("", "f3", "m3", "f1", "m1", "f2", "m2", "f4", "m4", "f5", "m5", "m6", "Andrea", "m7", "Annie", "klatt",
            "aunty", "klatt3", "linda", "Alex", "steph", "david", "belinda", "edward", "john", "paul", "robert",
            "Michael", "max", "Lee")
FEMALE = {"f1", "f2", "f3", "f4", "f5", "Andrea", "Annie", "aunty", "linda", "steph", "belinda"}


def espeak_version() -> str:
    exe = shutil.which("espeak-ng")
    if not exe:
        raise RuntimeError(
            "espeak-ng is not installed; the synthetic source needs it (`apt-get install espeak-ng`, or `make setup`)"
        )
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng -> float32 mono at 22.05 kHz, trimmed."""
    r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                       capture_output=True)
    if r.returncode != 0 or not r.stdout:
        raise TTSError("tts_failed", f"espeak-ng -v {voice} failed: {r.stderr.decode(errors='replace').strip()[:200]}")
    x, sr = read_wav(r.stdout)
    if sr != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng produced {sr} Hz audio, expected {ESPEAK_RATE}")
    return trim(x)


class EspeakBackend(Backend):
    name = "espeak"

    def __init__(self, language: str = "te") -> None:
        """``language``: a language voice (``te``: variants are added per voice), or an explicit comma list of
        espeak-ng voices (``te+f4,te+m3``), one voice each."""
        names = [x.strip() for x in language.split(",") if x.strip()]
        self.listed = names if len(names) > 1 or "+" in language else []
        self.language = names[0].split("+")[0] if names else "te"

    def voices(self, count: int) -> list[Voice]:
        """Voice k: a variant with a pitch range (female or male, after the variant) and a rate range; each dialog
        draws its pitch and rate within them (:meth:`in_dialog`). The first two are the source's original pair."""
        out = []
        for k in range(count):
            rng = random.Random(f"espeak:{self.language}:{k}")
            variant = self.listed[k].partition("+")[2] if self.listed else VARIANTS[k % len(VARIANTS)]
            if k < 2:
                pitch, speed = ((30, 50), (150, 175)) if k == 0 else ((55, 75), (140, 165))
            else:
                lo = rng.randint(50, 60) if variant in FEMALE else rng.randint(25, 35)
                s0 = rng.randint(135, 150)
                pitch, speed = (lo, lo + 20), (s0, s0 + 25)
            name = self.listed[k] if self.listed else (f"{self.language}+{variant}" if variant else self.language)
            out.append(Voice(f"espeak:{name}:p{pitch[0]}-{pitch[1]}:s{speed[0]}-{speed[1]}", "espeak",
                             (("voice", name), ("pitch", pitch), ("speed", speed))))
        return out

    @staticmethod
    def in_dialog(voice: Voice, pitch: int, speed: int) -> Voice:
        """The voice with this dialog's pitch and rate (same id: the same speaker)."""
        return Voice(voice.id, voice.backend, (("voice", voice.param("voice")), ("pitch", pitch), ("speed", speed)))

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        x = espeak(text, voice.param("voice"), voice.param("speed"), voice.param("pitch"))
        return x, ESPEAK_RATE

    def fingerprint(self) -> str:
        return espeak_version()


# -- any local program ----------------------------------------------------------------------------------------
class CommandBackend(Backend):
    name = "command"

    def __init__(self, template: str, count: int = 1, timeout_s: float = 300.0) -> None:
        try:
            self.argv = shlex.split(template)
        except ValueError as e:
            raise ValueError(f"command voice {template!r}: {e}") from None
        if not self.argv or not any("{out}" in a for a in self.argv):
            raise ValueError(f"command voice {template!r}: the command must name the WAV to write as {{out}}")
        if count > 1 and not any("{voice}" in a for a in self.argv):
            raise ValueError(f"command voice {template!r}: {count} voices need {{voice}} (0..{count - 1}) in the command")
        if not shutil.which(self.argv[0]):
            raise FileNotFoundError(f"command voice: program {self.argv[0]!r} not found on PATH")
        self.template, self.timeout_s = template, timeout_s
        self.tag = hashlib.sha256(template.encode()).hexdigest()[:8]

    def voices(self, count: int) -> list[Voice]:
        return [Voice(f"command:{self.tag}:{k}", "command", (("index", k),)) for k in range(count)]

    def speak(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="matalu-tts-") as d:
            out = str(Path(d) / "out.wav")
            fill = {"{out}": out, "{text}": text, "{voice}": str(voice.param("index"))}
            argv = []
            for a in self.argv:
                for k, v in fill.items():
                    a = a.replace(k, v)
                argv.append(a)
            stdin = None if any("{text}" in a for a in self.argv) else text.encode()
            try:
                r = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                raise TTSError("tts_failed", f"{self.argv[0]} took over {self.timeout_s:.0f} s") from None
            if r.returncode != 0:
                last = (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1][:200]
                raise TTSError("tts_failed", f"{self.argv[0]} exited with status {r.returncode}: {last}")
            p = Path(out)
            if not p.exists() or p.stat().st_size == 0:
                raise TTSError("tts_failed", f"{self.argv[0]} wrote no audio to {{out}}")
            try:
                x, sr = read_wav(p.read_bytes())
            except Exception as e:
                raise TTSError("tts_failed", f"{self.argv[0]} wrote something that is not audio ({e})") from None
        return trim(x), sr

    def fingerprint(self) -> str:
        return self.template
