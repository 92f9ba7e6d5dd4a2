"""IndicTTS Telugu (IIT Madras): two studio speakers (one male, one female), 48 kHz read speech, ~8.7 h.

Two layouts, both a copy the user supplies (``--archive PATH|URL``, a directory is used in place):

* ``layout="iitm"``: the IIT Madras release (granted on a licence request at https://www.iitm.ac.in/donlab/tts/):
  ``{male,female}/.../wav/*.wav`` with Festival prompt files ``txt.done.data`` whose lines read
  ``( utt_id "text" )`` (quotes inside the text escaped as ``\\"``). Lines that do not parse become ``Reject`` rows
  (``bad_line``); a prompt without its WAV is ``missing_audio``, a WAV without a prompt ``no_transcript``.
* ``layout="hf"``: the Hugging Face parquet mirror ``SPRINGLab/IndicTTS_Telugu`` (``data/train-*.parquet``;
  columns ``audio`` {bytes, path}, ``text``, ``gender`` as a ClassLabel), read from local files only; the audio
  stays in the parquet files (``member = "parquet:<row>:audio"``).

Without ``layout`` the copy's contents decide (``txt.done.data`` files: iitm; parquet files: hf).
Speakers are ``indictts-te-male`` and ``indictts-te-female``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from manifests.rows import Recording, Reject
from pipelines.sources import hfparquet as H
from pipelines.sources.listing import read_lines
from pipelines.sources.manifest import safe_id
from pipelines.sources.usercopy import fetch_user_copy

NAME = "indictts"
LICENSE_IITM = "IndicTTS licence (see IIT Madras terms)"
LICENSE_HF = "CC-BY-4.0"
HF_REPO = "SPRINGLab/IndicTTS_Telugu"
INFO = {
    "name": NAME,
    "hours": "~8.7",
    "license": f"{LICENSE_IITM}; HF mirror {LICENSE_HF}",
    "access": "user-supplied",
    "kind": "mono",
    "description": "IIT Madras Indic TTS Telugu: 2 studio speakers, 48 kHz (IITM release or HF parquet mirror)",
}
MISSING = (
    "IndicTTS Telugu is not downloaded automatically. Either request the IIT Madras release (licence form at "
    "https://www.iitm.ac.in/donlab/tts/; it unpacks to {male,female}/.../wav + txt.done.data), or download the "
    f"Hugging Face mirror {HF_REPO} (its data/*.parquet files). Then run:\n"
    f"  matalu ingest --source {NAME} --archive PATH\n"
    "where PATH is the archive (tar/zip), a URL of it, or the unpacked directory."
)
LAYOUTS = ("iitm", "hf")
_LINE_RE = re.compile(r'^\(\s*(?P<id>[^\s"()]+)\s+"(?P<text>(?:[^"\\]|\\.)*)"\s*\)$')
_TEXT_COLS = ("text", "sentence", "transcript", "transcription", "normalized_text")
_GENDER_COLS = ("gender", "speaker_id", "speaker", "spk")


def download(target: str | Path, *, mirror: str | None = None, archive: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True, **options: object) -> Path:
    """The user's copy, fetched (URL), extracted (archive) and marked complete; a directory is used in place."""
    layout = options.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"indictts: layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    return fetch_user_copy(NAME, target, archive=archive, sha256=sha256, progress=progress, missing=MISSING)


def detect_layout(root: Path) -> str:
    if root.is_file():
        if root.suffix == ".parquet":
            return "hf"
        raise ValueError(f"indictts: {root} is a file, not an IndicTTS copy")
    if next(root.rglob("txt.done.data"), None) is not None:
        return "iitm"
    if next(root.rglob("*.parquet"), None) is not None:
        return "hf"
    raise FileNotFoundError(
        f"indictts: {root} holds neither the IITM layout ({{male,female}}/.../txt.done.data + wav/) nor parquet "
        f"files of the {HF_REPO} mirror: is this the right archive?")


def prepare(downloaded: str | Path, *, layout: str | None = None, license: str | None = None,
            **_: object) -> Iterator[Recording | Reject]:
    root = Path(downloaded)
    layout = layout or detect_layout(root)
    if layout == "iitm":
        yield from _prepare_iitm(root, license or LICENSE_IITM)
    elif layout == "hf":
        yield from _prepare_hf(root, license or LICENSE_HF)
    else:
        raise ValueError(f"indictts: layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")


# -- IITM release ---------------------------------------------------------------------------------------------
def parse_line(line: str) -> tuple[str, str] | None:
    """``( utt_id "text" )`` -> (utt_id, text) with ``\\"`` and ``\\\\`` unescaped; None when malformed."""
    m = _LINE_RE.match(line.strip())
    if not m:
        return None
    text = re.sub(r"\\(.)", r"\1", m.group("text")).strip()
    return m.group("id"), text


def _gender_dir(root: Path, f: Path) -> tuple[str, Path]:
    """(gender, the folder named after it) from the path of ``f`` below ``root``; ("", f's parent) if none."""
    rel = f.relative_to(root).parts[:-1]
    for i, part in enumerate(rel):
        p = part.lower()
        g = "female" if "female" in p else "male" if "male" in p else ""
        if g:
            return g, root.joinpath(*rel[: i + 1])
    return "", f.parent


def _prepare_iitm(root: Path, license: str) -> Iterator[Recording | Reject]:
    prompts = sorted(root.rglob("txt.done.data"))
    if not prompts:
        raise FileNotFoundError(f"indictts: no txt.done.data under {root}: is this the IITM release?")
    seen: set[str] = set()
    for pf in prompts:
        gender, gdir = _gender_dir(root, pf)
        wav_root = pf.parent / "wav" if (pf.parent / "wav").is_dir() else gdir
        wavs: dict[str, Path] = {}
        for w in sorted(wav_root.rglob("*.wav")):
            wavs.setdefault(w.stem, w)
        speaker = f"indictts-te-{gender or 'unknown'}"
        rel = pf.relative_to(root).as_posix()
        used: set[str] = set()
        for n, line in read_lines(pf, rel):
            if not line.strip():
                continue
            item = f"{rel}:{n}"
            parsed = parse_line(line)
            if parsed is None:
                yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                             detail=f"not a Festival prompt line ( utt_id \"text\" ): {line.strip()[:120]!r}")
                continue
            utt, text = parsed
            rid = safe_id(f"{gender or 'unknown'}-{utt}")
            if rid in seen:
                yield Reject(item=item, stage="prepare", reason="duplicate_id", source=NAME, recording_id=rid,
                             detail=f"utterance {utt!r} appears twice")
                continue
            wav = wavs.get(utt)
            if wav is None:
                yield Reject(item=item, stage="prepare", reason="missing_audio", source=NAME, recording_id=rid,
                             detail=f"no {utt}.wav under {wav_root.relative_to(root).as_posix() or '.'}")
                continue
            seen.add(rid)
            used.add(utt)
            yield Recording(recording_id=rid, source=NAME, uri=str(wav.resolve()), speaker_id=speaker, gender=gender,
                            text=text, language="te", license=license, split="train")
        for stem, wav in wavs.items():
            if stem not in used and safe_id(f"{gender or 'unknown'}-{stem}") not in seen:
                yield Reject(item=wav.relative_to(root).as_posix(), stage="prepare", reason="no_transcript",
                             source=NAME, detail=f"{wav.name} has no line in {rel}")


# -- HF parquet mirror ----------------------------------------------------------------------------------------
def _prepare_hf(root: Path, license: str) -> Iterator[Recording | Reject]:
    missing = f"indictts: no parquet files under {root} (expected the {HF_REPO} data/*.parquet)"
    for f, meta, stem, split, i, row in H.rows_of(root, None, missing):
        rid = H.row_id(f"hf-{stem}", i, meta.audio_paths[i])
        gender = ""
        gcol = H.find_column(list(row), _GENDER_COLS)
        if gcol:
            gender = H.gender_of(row.get(gcol))
        if not gender:  # the audio's file name often says it: train_telugumale_00001.wav
            name = meta.audio_paths[i].lower()
            gender = "female" if "female" in name else "male" if "male" in name else ""
        text = H.text_of(row, _TEXT_COLS)
        if not text:
            yield Reject(item=f"{f.name}:{i}", stage="prepare", reason="no_transcript", source=NAME,
                         recording_id=rid, detail=f"row {i} of {f.name} has no text")
            continue
        yield Recording(recording_id=rid, source=NAME, uri=str(f.resolve()), member=f"parquet:{i}:{meta.audio_column}",
                        speaker_id=f"indictts-te-{gender or 'unknown'}", gender=gender, text=text, language="te",
                        license=license, split=split)
