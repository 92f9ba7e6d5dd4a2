"""MUCS 2021 Telugu (the Telugu part of the MUCS 2021 challenge data, Microsoft Research Open Data).

Access: the Telugu data is on Microsoft Research Open Data (https://msropendata.com), behind a sign-in and its
terms; there is no public URL to fetch it from, so the user supplies the archive (``archive``: a local path, an
http(s) URL they can fetch, a directory where they already extracted it, or a list of these, e.g. separate train
and test archives). Note: OpenSLR 103 (the MUCS 2021 page on OpenSLR) holds Hindi, Marathi and Odia only; it
has NO Telugu.

Layout inside the archive (tar.gz or zip, with or without a top folder)::

    Telugu/train/audio/<utt_id>.wav        16 kHz mono
    Telugu/train/transcription.txt         lines "<utt_id> <text>" (first whitespace-separated token = id)
    Telugu/test/...                        the same

The split is the folder name (``train`` / ``test``). Speakers are not given (``speaker_id`` stays empty).
``prepare`` yields one ``Recording`` per transcribed WAV (sorted by id) and a ``Reject`` for every malformed
line, listed-but-missing WAV, WAV without a transcript and duplicate id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

from manifests.rows import Recording, Reject
from pipelines.sources.common import first_wins
from pipelines.sources.listing import read_lines
from pipelines.sources.manifest import safe_id
from pipelines.sources.usercopy import fetch_user_copy, user_copy_roots

NAME = "mucs"
LICENSE = "MUCS-2021 (research use; see the MSR Open Data terms)"
LANGUAGE = "te"
TRANSCRIPT = "transcription.txt"
# Language folders of other MUCS releases; a transcription.txt under one of these is not Telugu.
OTHER_LANGUAGES = {"gujarati", "tamil", "hindi", "marathi", "odia", "oriya", "bengali", "english"}
INFO = {
    "name": NAME,
    "hours": "~40 (train+test)",
    "license": LICENSE,
    "access": "login",
    "kind": "mono",
    "description": "MUCS 2021 Telugu read speech, 16 kHz; archive from MSR Open Data (login), not on OpenSLR 103",
}
MISSING_MESSAGE = (
    "the mucs source needs the MUCS 2021 Telugu archive, which you download yourself: it is on Microsoft "
    "Research Open Data (https://msropendata.com, search 'MUCS 2021' / 'Microsoft Speech Corpus (Indian "
    "languages)' and take the Telugu train and test data), behind a sign-in and its terms of use. OpenSLR 103 "
    "(the MUCS 2021 page on OpenSLR) has NO Telugu: it holds Hindi, Marathi and Odia only. The archive (tar.gz or "
    "zip) should contain Telugu/{train,test}/audio/*.wav and Telugu/{train,test}/transcription.txt. Then run\n"
    "    matalu ingest --source mucs --archive PATH\n"
    "(PATH: the archive, an http(s) URL to it, or the folder you extracted it into; or only fetch and extract it "
    "with `matalu sources download mucs --to DIR --archive PATH`)."
)


# -- download -------------------------------------------------------------------------------------------------
def _check_telugu(root: Path, archive: str) -> None:
    if not _split_dirs(root):
        raise FileNotFoundError(
            f"mucs: no Telugu/{{train,test}}/{TRANSCRIPT} in {archive} (looked under {root}): is this "
            "the MUCS 2021 Telugu archive?")


def download(target: str | Path, *, archive: str | Sequence[str] | None = None, mirror: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True, **_: object) -> Path:
    """Fetch (when a URL), verify (when pinned with ``sha256``) and extract the user's MUCS Telugu archive(s), each
    into ``target/extracted/<archive stem>`` (a folder is used in place); return ``target``.

    Without ``archive``, a finished earlier download in ``target`` is reused; otherwise MissingArchive says
    what to download and from where. ``mirror`` does not apply (there is no public file to mirror)."""
    archives = [archive] if isinstance(archive, (str, Path)) else list(archive or [])
    fetch_user_copy(NAME, target, archive=archives, sha256=sha256, progress=progress, missing=MISSING_MESSAGE,
                    check=_check_telugu)
    return Path(target)


# -- prepare --------------------------------------------------------------------------------------------------
def _split_dirs(root: Path) -> list[Path]:
    """Folders holding a transcription.txt: those under a ``Telugu`` folder, or, when the archive has no
    language folder, every one not under another language's folder."""
    if not root.is_dir():
        return []
    hits = [p.parent for p in sorted(root.rglob(TRANSCRIPT))
            if p.is_file() and "__MACOSX" not in p.parts]
    rel = [(d, [x.lower() for x in d.relative_to(root).parts]) for d in hits]
    telugu = [d for d, parts in rel if "telugu" in parts]
    if telugu:
        return telugu
    return [d for d, parts in rel if not OTHER_LANGUAGES.intersection(parts)]


def _wav_index(split_dir: Path) -> dict[str, Path]:
    base = split_dir / "audio" if (split_dir / "audio").is_dir() else split_dir
    out: dict[str, Path] = {}
    for p in sorted(base.rglob("*")):
        if p.suffix.lower() == ".wav" and not p.name.startswith("._") and p.is_file():
            out.setdefault(p.stem, p)
    return out


def _split_rows(split_dir: Path, target: Path) -> Iterator[Recording | Reject]:
    split = split_dir.name.lower()
    tfile = split_dir / TRANSCRIPT
    try:
        rel = tfile.relative_to(target).as_posix()
    except ValueError:
        rel = str(tfile)
    wavs = _wav_index(split_dir)
    listed: set[str] = set()
    for n, raw in read_lines(tfile, rel):
        if not raw.strip():
            continue
        item = f"{rel}:{n}"
        parts = raw.strip().split(maxsplit=1)
        utt = parts[0]
        if utt.lower().endswith(".wav"):
            utt = utt[:-4]
        text = unicodedata.normalize("NFC", parts[1].strip()) if len(parts) > 1 else ""
        if not utt or not text:
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"{rel} line {n}: expected '<utt_id> <text>' (no text): {raw[:120]!r}")
            continue
        rid = safe_id(f"{split}-{utt}")
        if utt in listed:
            yield Reject(item=item, stage="prepare", reason="duplicate_id", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n}: utterance {utt!r} is listed again; the first line is kept")
            continue
        listed.add(utt)
        wav = wavs.get(utt)
        if wav is None:
            yield Reject(item=rid, stage="prepare", reason="missing_audio", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n} lists {utt}, but {split_dir.name}/audio/{utt}.wav is not there")
            continue
        yield Recording(recording_id=rid, source=NAME, uri=str(wav.resolve()), member="", speaker_id="",
                        text=text, language=LANGUAGE, license=LICENSE, split=split)
    for utt in sorted(set(wavs) - listed):
        rid = safe_id(f"{split}-{utt}")
        yield Reject(item=rid, stage="prepare", reason="no_transcript", source=NAME, recording_id=rid,
                     detail=f"{wavs[utt].name} in {split_dir.name}/audio has no line in {rel}")


def prepare(downloaded: str | Path, **_: object) -> Iterator[Recording | Reject]:
    """Recordings (sorted by id) and prepare-stage rejects of a MUCS download made by :func:`download`."""
    target = Path(downloaded).resolve()
    roots = user_copy_roots(target)
    if roots is None:
        raise FileNotFoundError(f"{target} holds no finished MUCS download; run download() with the archive first "
                                "(`matalu sources download mucs --to DIR --archive PATH`)")
    rows = (row for root in roots  # extracted/<archive stem>, or a folder used in place
            for split_dir in _split_dirs(root) for row in _split_rows(split_dir, target))
    yield from first_wins(rows, NAME, lambda r: f"{r.recording_id} appears twice ({r.uri}); the first is kept")
