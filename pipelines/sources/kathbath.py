"""Kathbath (AI4Bharat, IndicSUPERB), Telugu: ~155 h of read speech from many speakers, CC-BY-4.0.

A copy the user supplies (``--archive PATH|URL``; a directory is used in place), in one of two layouts:

* ``layout="tar"``: the released archive (e.g. ``telugu.tar`` from the IndicSUPERB page,
  https://github.com/AI4Bharat/IndicSUPERB): ``.../data/telugu/<split>/**/<utt>-<speaker>-<gender>.m4a`` with one
  transcript file per split, ``transcription_n2w.txt`` (numbers written as words; preferred) or
  ``transcription.txt``, whose lines are ``<file.m4a><TAB><text>``. The language folder is searched for anywhere
  in the archive. Unparseable transcript lines are ``bad_line`` rejects, a transcript without its audio
  ``missing_audio``, audio without a transcript ``no_transcript``.
* ``layout="hf"``: the Hugging Face parquet mirror ``ai4bharat/Kathbath`` (config ``telugu``: ``telugu/*.parquet``)
  read from local files only; the audio stays in the parquet files (``member = "parquet:<row>:<audio column>"``).

Without ``layout`` the copy's contents decide. Speaker = the file name's ``<speaker>`` part (or the speaker
column), gender from its ``m``/``f`` part, split from the folder (or the parquet shard's name).
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

NAME = "kathbath"
LICENSE = "CC-BY-4.0"
LANGUAGE = "telugu"
HF_REPO = "ai4bharat/Kathbath"
INFO = {
    "name": NAME,
    "hours": "~155 (Telugu)",
    "license": LICENSE,
    "access": "user-supplied",
    "kind": "mono",
    "description": "AI4Bharat Kathbath Telugu read speech, many speakers (release tar or HF parquet mirror)",
}
MISSING = (
    "Kathbath is not downloaded automatically. Get the Telugu archive from the IndicSUPERB release "
    "(https://github.com/AI4Bharat/IndicSUPERB, file telugu.tar: kathbath/data/telugu/<split>/*.m4a + "
    f"transcription_n2w.txt) or the Hugging Face mirror {HF_REPO} (config telugu, parquet files). Then run:\n"
    f"  matalu ingest --source {NAME} --archive PATH\n"
    "where PATH is the archive, a URL of it, or the unpacked directory."
)
LAYOUTS = ("tar", "hf")
TRANSCRIPTS = ("transcription_n2w.txt", "transcription.txt")
AUDIO_EXT = (".m4a", ".wav", ".flac")
_NAME_RE = re.compile(r"^(?P<utt>.+)-(?P<spk>[^-]+)-(?P<g>[A-Za-z]+)$")
_TEXT_COLS = ("text", "transcript", "transcription", "sentence", "normalized", "verbatim")
_SPK_COLS = ("speaker_id", "speaker", "spk", "client_id")
_NAME_COLS = ("fname", "file", "filename", "file_name", "id", "utt_id")


def download(target: str | Path, *, mirror: str | None = None, archive: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True, **options: object) -> Path:
    """The user's copy, fetched (URL), extracted (archive) and marked complete; a directory is used in place."""
    layout = options.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"kathbath: layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")
    return fetch_user_copy(NAME, target, archive=archive, sha256=sha256, progress=progress, missing=MISSING)


def language_dirs(root: Path, language: str = LANGUAGE) -> list[Path]:
    """``.../data/<language>`` folders (any depth); failing those, any folder named ``<language>`` with audio."""
    dirs = sorted(p for p in root.rglob(language) if p.is_dir() and p.parent.name == "data")
    if not dirs:
        dirs = sorted(p for p in root.rglob(language) if p.is_dir()
                      and any(q.suffix.lower() in AUDIO_EXT for q in p.rglob("*")))
    return dirs


def detect_layout(root: Path, language: str = LANGUAGE) -> str:
    if root.is_file():
        if root.suffix == ".parquet":
            return "hf"
        raise ValueError(f"kathbath: {root} is a file, not a Kathbath copy")
    if language_dirs(root, language):
        return "tar"
    if next(root.rglob("*.parquet"), None) is not None:
        return "hf"
    raise FileNotFoundError(f"kathbath: {root} holds neither data/{language}/<split>/*.m4a nor parquet files of "
                            f"the {HF_REPO} mirror: is this the right archive?")


def parse_name(stem: str) -> tuple[str, str]:
    """(speaker, gender) from ``<utt>-<speaker>-<gender>``; ("", "") when the name has another form."""
    m = _NAME_RE.match(stem)
    if not m:
        return "", ""
    return m.group("spk"), H.gender_of(m.group("g"))


def prepare(downloaded: str | Path, *, layout: str | None = None, language: str = LANGUAGE,
            license: str | None = None, **_: object) -> Iterator[Recording | Reject]:
    root = Path(downloaded)
    layout = layout or detect_layout(root, language)
    if layout == "tar":
        yield from _prepare_tar(root, language, license or LICENSE)
    elif layout == "hf":
        yield from _prepare_hf(root, language, license or LICENSE)
    else:
        raise ValueError(f"kathbath: layout must be one of {', '.join(LAYOUTS)} (got {layout!r})")


# -- release tar ----------------------------------------------------------------------------------------------
def _prepare_tar(root: Path, language: str, license: str) -> Iterator[Recording | Reject]:
    langs = language_dirs(root, language)
    if not langs:
        raise FileNotFoundError(f"kathbath: no data/{language} folder under {root}: is this the right archive?")
    seen: set[str] = set()
    for lang_dir in langs:
        for split_dir in sorted(p for p in lang_dir.iterdir() if p.is_dir()):
            split = split_dir.name
            audio: dict[str, Path] = {}
            for a in sorted(split_dir.rglob("*")):
                if a.suffix.lower() in AUDIO_EXT and a.is_file():
                    audio.setdefault(a.stem, a)
            tfile = next((hits[0] for name in TRANSCRIPTS if (hits := sorted(split_dir.rglob(name)))), None)
            if tfile is None:
                for stem, a in audio.items():
                    yield Reject(item=a.relative_to(root).as_posix(), stage="prepare", reason="no_transcript",
                                 source=NAME, detail=f"split {split} has no {' or '.join(TRANSCRIPTS)}")
                continue
            rel = tfile.relative_to(root).as_posix()
            used: set[str] = set()
            for n, line in read_lines(tfile, rel):
                if not line.strip():
                    continue
                item = f"{rel}:{n}"
                name, tab, text = line.partition("\t")
                name, text = name.strip(), text.strip()
                if not tab or not name or not text:
                    yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                                 detail=f"expected <file.m4a><TAB><text>, got {line.strip()[:120]!r}")
                    continue
                stem = Path(name).stem if Path(name).suffix.lower() in AUDIO_EXT else Path(name).name
                rid = safe_id(f"{split}-{stem}")
                if rid in seen:
                    yield Reject(item=item, stage="prepare", reason="duplicate_id", source=NAME, recording_id=rid,
                                 detail=f"{name} appears twice")
                    continue
                a = audio.get(stem)
                if a is None:
                    yield Reject(item=item, stage="prepare", reason="missing_audio", source=NAME, recording_id=rid,
                                 detail=f"{name} is listed in {tfile.name} but not in {split_dir.relative_to(root).as_posix()}")
                    continue
                seen.add(rid)
                used.add(stem)
                spk, gender = parse_name(stem)
                yield Recording(recording_id=rid, source=NAME, uri=str(a.resolve()), speaker_id=spk, gender=gender,
                                text=text, language="te", license=license, split=split)
            for stem, a in audio.items():
                if stem not in used:
                    yield Reject(item=a.relative_to(root).as_posix(), stage="prepare", reason="no_transcript",
                                 source=NAME, detail=f"{a.name} has no line in {rel}")


# -- HF parquet mirror ----------------------------------------------------------------------------------------
def _prepare_hf(root: Path, language: str, license: str) -> Iterator[Recording | Reject]:
    missing = f"kathbath: no parquet files under {root} (expected {HF_REPO} {language}/*.parquet)"
    for f, meta, fstem, split_default, i, row in H.rows_of(root, language, missing):
        cols = list(row)
        name = H.text_of(row, _NAME_COLS) or meta.audio_paths[i]
        stem = Path(name).stem if name else ""
        rid = H.row_id(fstem, i, stem)
        text = H.text_of(row, _TEXT_COLS)
        if not text:
            yield Reject(item=f"{f.name}:{i}", stage="prepare", reason="no_transcript", source=NAME,
                         recording_id=rid, detail=f"row {i} of {f.name} has no text")
            continue
        spk_from_name, g_from_name = parse_name(stem) if stem else ("", "")
        spk = H.text_of(row, _SPK_COLS) or spk_from_name
        gcol = H.find_column(cols, ("gender", "sex"))
        gender = (H.gender_of(row.get(gcol)) if gcol else "") or g_from_name
        split = H.text_of(row, ("split",)) or split_default
        yield Recording(recording_id=rid, source=NAME, uri=str(f.resolve()), member=f"parquet:{i}:{meta.audio_column}",
                        speaker_id=spk, gender=gender, text=text, language="te", license=license, split=split)
