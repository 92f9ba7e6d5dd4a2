"""OpenSLR SLR66: crowdsourced high-quality Telugu multi-speaker speech (Google, CC-BY-SA-4.0).

Published as two zips at https://www.openslr.org/resources/66/ (mirrors: us.openslr.org, trmal.openslr.org):
``te_in_female.zip`` and ``te_in_male.zip``. Each holds 48 kHz 16-bit mono WAVs named ``<FileID>.wav`` and a
``line_index.tsv`` of ``FileID<TAB>text`` lines (a few lines carry a third column, which is ignored).
FileIDs look like ``tef_01033_00007107192``: the first two ``_`` fields are the speaker (``tef_01033``), and
the prefix says the gender (``tef`` female, ``tem`` male).

``download`` fetches the zips (pinned size and sha256; ``mirror`` for another host, ``sha256`` to pin another
release, ``archive`` for a directory that already holds the zips or for one zip), extracts each into
``<target>/<zip stem>/`` and writes ``<target>/.completed``; a rerun with the same inputs does nothing.
``prepare`` yields one ``Recording`` per transcribed WAV (sorted by id) and a ``Reject`` for every malformed
index line, listed-but-missing WAV, WAV without a transcript and duplicate id.
"""

from __future__ import annotations

import json
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from manifests.rows import Recording, Reject
from pipelines.sources import common
from pipelines.sources.common import RemoteFile
from pipelines.sources.listing import read_lines
from pipelines.sources.manifest import safe_id

NAME = "slr66"
LICENSE = "CC-BY-SA-4.0"
LANGUAGE = "te"
BASE_URL = "https://www.openslr.org/resources/66"
ALLOWED_HOSTS = ("www.openslr.org", "openslr.org", "us.openslr.org", "trmal.openslr.org")
GENDERS = ("female", "male")
REMOTES: dict[str, RemoteFile] = {
    "female": RemoteFile(f"{BASE_URL}/te_in_female.zip",
                         sha256="3aa3c22d6fad33ed68951f4934ae47349ee76b77220d8261ec3bda8c24bf42b2", size=505_680_804),
    "male": RemoteFile(f"{BASE_URL}/te_in_male.zip",
                       sha256="f8a0f239d39088b6702a2186681e2874328e9fcd9bfa6a0dd9e1dc5695be3185", size=529_447_066),
}
PREFIX_GENDER = {"tef": "female", "tem": "male"}
INDEX = "line_index.tsv"
LAYOUT = 1  # bump when the extracted layout changes, so old targets are redone
INFO = {
    "name": NAME,
    "hours": "~9",
    "license": LICENSE,
    "access": "open",
    "kind": "mono",
    "description": "OpenSLR 66: crowdsourced Telugu read speech, female and male speakers, 48 kHz WAV",
}


# -- download -------------------------------------------------------------------------------------------------
def _genders(genders: Iterable[str] | str) -> list[str]:
    gs = [genders] if isinstance(genders, str) else list(genders)
    gs = [str(g).strip().lower() for g in gs if str(g).strip()]
    bad = sorted(set(gs) - set(GENDERS))
    if bad or not gs:
        raise ValueError(f"slr66: genders must be a non-empty subset of {', '.join(GENDERS)} (got {genders!r})")
    return [g for g in GENDERS if g in gs]


def _name_gender(name: str) -> str:
    n = name.lower()
    return "female" if "female" in n else "male" if "male" in n else ""


def _plan(archive: str | None, genders: list[str]) -> list[tuple[RemoteFile | None, str | None]]:
    """(published file, what to pass fetch() as ``archive``) for each zip to fetch."""
    if not archive:
        return [(REMOTES[g], None) for g in genders]
    if "://" not in archive and Path(archive).expanduser().is_dir():
        d = Path(archive).expanduser()
        plan = []
        for g in genders:
            p = d / REMOTES[g].name
            if not p.is_file():
                raise FileNotFoundError(
                    f"slr66: --archive {d} holds no {REMOTES[g].name}; put it there, or choose the genders you have "
                    f"with --option genders=[female] (or [male]), or leave out --archive to download it")
            plan.append((REMOTES[g], str(p)))
        return plan
    # one zip (path or URL): it is whatever it holds, whatever ``genders`` says
    name = archive.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    g = _name_gender(name)
    return [(REMOTES[g] if g and REMOTES[g].name == name else None, archive)]


def download(target: str | Path, *, mirror: str | None = None, archive: str | None = None,
             sha256: dict[str, str] | None = None, progress: bool = True,
             genders: Iterable[str] | str = GENDERS, **_: object) -> Path:
    """Fetch, verify and extract the SLR66 zips into ``target``; return ``target``.

    ``genders`` picks the published zips (default both); ``archive`` is a directory holding them, or one zip
    (path or URL) used instead of downloading; ``mirror`` a base URL serving the same file names."""
    target = Path(target)
    plan = _plan(archive, _genders(genders))
    pins = {k: v.lower() for k, v in (sha256 or {}).items()}
    zips = {}
    for remote, arch in plan:
        name = remote.name if remote and not arch else (arch or "").rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        zips[name] = pins.get(name) or (remote.sha256 if remote and remote.name == name else None)
    key = {"source": NAME, "layout": LAYOUT, "zips": zips}
    if common.completed(target, key):
        return target
    for remote, arch in plan:
        local = common.fetch(remote, target / "downloads", mirror=mirror, archive=arch, sha256=pins,
                             allowed_hosts=ALLOWED_HOSTS, progress=progress)
        if not zipfile.is_zipfile(local):
            raise ValueError(f"slr66: {local} is not a zip archive; SLR66 publishes te_in_female.zip and "
                             "te_in_male.zip")
        common.extract_to(local, target / Path(local.name).stem, progress=progress)
    common.mark_completed(target, key)
    return target


# -- prepare --------------------------------------------------------------------------------------------------
def _wav_index(root: Path) -> dict[str, Path]:
    """FileID -> WAV path for every WAV under ``root`` (macOS resource forks skipped)."""
    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() != ".wav" or p.name.startswith("._") or "__MACOSX" in p.parts or not p.is_file():
            continue
        out.setdefault(p.stem, p)
    return out


def _speaker(file_id: str) -> str:
    parts = file_id.split("_")
    return "_".join(parts[:2]) if len(parts) >= 3 else ""


def _zip_rows(root: Path, zip_name: str, target: Path) -> Iterator[Recording | Reject]:
    index = common.find_one(root, INDEX, "SLR66 transcript index")
    rel = index.relative_to(target).as_posix()
    wavs = _wav_index(root)
    zip_gender = _name_gender(zip_name)
    listed: set[str] = set()
    for n, raw in read_lines(index, rel):
        if not raw.strip():
            continue
        item = f"{rel}:{n}"
        parts = raw.split("\t")
        file_id = parts[0].strip()
        if file_id.lower().endswith(".wav"):
            file_id = file_id[:-4]
        text = unicodedata.normalize("NFC", parts[1].strip()) if len(parts) > 1 else ""
        if len(parts) < 2 or not file_id or not text:
            why = "no tab" if len(parts) < 2 else "empty FileID" if not file_id else "empty text"
            yield Reject(item=item, stage="prepare", reason="bad_line", source=NAME,
                         detail=f"{rel} line {n}: expected 'FileID<TAB>text' ({why}): {raw[:120]!r}")
            continue
        rid = safe_id(file_id)
        if file_id in listed:
            yield Reject(item=item, stage="prepare", reason="duplicate_id", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n}: FileID {file_id!r} is listed again; the first line is kept")
            continue
        listed.add(file_id)
        wav = wavs.get(file_id)
        if wav is None:
            yield Reject(item=rid, stage="prepare", reason="missing_audio", source=NAME, recording_id=rid,
                         detail=f"{rel} line {n} lists {file_id}.wav, which is not in {zip_name}")
            continue
        yield Recording(
            recording_id=rid,
            source=NAME,
            uri=str(wav.resolve()),
            member="",
            speaker_id=_speaker(file_id),
            gender=PREFIX_GENDER.get(file_id.split("_", 1)[0].lower(), zip_gender),
            text=text,
            language=LANGUAGE,
            license=LICENSE,
        )
    for file_id in sorted(set(wavs) - listed):
        rid = safe_id(file_id)
        yield Reject(item=rid, stage="prepare", reason="no_transcript", source=NAME, recording_id=rid,
                     detail=f"{wavs[file_id].relative_to(target).as_posix()} has no line in {rel}")


def prepare(downloaded: str | Path, **_: object) -> Iterator[Recording | Reject]:
    """Recordings (sorted by id) and prepare-stage rejects of an SLR66 download made by :func:`download`."""
    target = Path(downloaded)
    try:
        key = json.loads((target / ".completed").read_text())
    except (FileNotFoundError, ValueError):
        raise FileNotFoundError(f"{target} holds no finished SLR66 download; run download() first "
                                f"(`matalu sources download slr66 --to {target.parent}`)") from None
    rows = (row for zip_name in sorted(key.get("zips", {}))
            for row in _zip_rows(target / Path(zip_name).stem, zip_name, target))
    yield from common.first_wins(rows, NAME,
                                 lambda r: f"{r.recording_id} appears in more than one zip; the first is kept")
