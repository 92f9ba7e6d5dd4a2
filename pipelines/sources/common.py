"""What every recipe shares: fetch an archive (download with resume/verify, a mirror, or the user's own file),
extract it safely once, and mark the whole download complete so reruns skip it (docs/DESIGN.md §6).

Recipe modules expose ``NAME``, ``INFO`` (name, hours, license, access, kind, description) and::

    download(target, *, mirror=None, archive=None, sha256=None, progress=True, **options) -> Path
    prepare(downloaded, **options) -> Iterable[Recording | Reject]

``archive`` is a local path or a URL the user supplies (Common Voice and MUCS sit behind logins);
``sha256`` maps file names to checksums that pin another release (``--sha256 FILE=HEX``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from manifests.rows import Recording, Reject
from storage.download import DownloadSpec, download
from storage.extract import ExtractLimits, extract


@dataclass(frozen=True)
class RemoteFile:
    """A published file: where it lives, its size and sha256 when pinned."""

    url: str
    sha256: str | None = None
    size: int | None = None

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


class MissingArchive(FileNotFoundError):
    """A source that cannot be downloaded without a login, and no --archive was given."""


def fetch(
    remote: RemoteFile | None,
    downloads: Path,
    *,
    mirror: str | None = None,
    archive: str | None = None,
    sha256: dict[str, str] | None = None,
    allowed_hosts: Sequence[str] = (),
    progress: bool = True,
    name: str | None = None,
) -> Path:
    """Return a verified local copy of one archive.

    * ``archive`` (local path): used in place, checked against the pinned sha256 when one applies.
    * ``archive`` (http/https URL): downloaded like a published file (its host is allowed: the user chose it).
    * otherwise ``remote`` is downloaded, from ``mirror`` when given, else from its URL (host must be allowed).
    """
    downloads.mkdir(parents=True, exist_ok=True)
    overrides = {k: v.lower() for k, v in (sha256 or {}).items()}
    if archive and "://" not in archive:
        p = Path(archive).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"--archive {archive}: no such file")
        want = overrides.get(p.name) or (remote.sha256 if remote and remote.name == p.name else None)
        if want:
            from storage.uri import sha256_file

            got = sha256_file(p)
            if got != want:
                raise ValueError(f"--archive {p}: sha256 is {got}, expected {want}; pin your release with "
                                 f"--sha256 {p.name}=<hex> if it is a different version")
        return p
    if archive:
        fname = name or archive.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        spec = DownloadSpec(archive, sha256=overrides.get(fname) or (remote.sha256 if remote and remote.name == fname else None),
                            filename=fname)
        return download(spec, downloads, allowed_hosts=None, progress=progress)
    if remote is None:
        raise MissingArchive("this source needs --archive PATH|URL")
    spec = DownloadSpec(remote.url, sha256=overrides.get(remote.name, remote.sha256),
                        size=None if remote.name in overrides else remote.size, filename=name)
    return download(spec, downloads, allowed_hosts=list(allowed_hosts), mirror=mirror, progress=progress)


def extract_to(archive: Path, dest: Path, *, limits: ExtractLimits | None = None, progress: bool = True) -> Path:
    """Safe, resumable extraction (skipped when its marker says this archive is already extracted)."""
    return extract(archive, dest, limits=limits or ExtractLimits(), progress=progress)


def completed(target: Path, key: dict) -> bool:
    """True when ``target/.completed`` records the same ``key`` (URLs, checksums, options)."""
    m = target / ".completed"
    try:
        return json.loads(m.read_text()) == key
    except (FileNotFoundError, ValueError):
        return False


def mark_completed(target: Path, key: dict) -> None:
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / ".completed.tmp"
    tmp.write_text(json.dumps(key, sort_keys=True))
    tmp.replace(target / ".completed")


def find_one(root: Path, pattern: str, what: str) -> Path:
    """The single file matching ``pattern`` under ``root``; a clear error when there is none."""
    hits = sorted(root.rglob(pattern))
    if not hits:
        raise FileNotFoundError(f"no {what} ({pattern}) under {root}: is this the right archive?")
    return hits[0]


def remove_tree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


def first_wins(rows: Iterable[Recording | Reject], source: str,
               duplicate: Callable[[Recording], str]) -> Iterator[Recording | Reject]:
    """Rejects first, then recordings sorted by id; a recording id seen again becomes a ``duplicate_id`` reject
    (detail from ``duplicate(row)``) and the first one is kept."""
    recordings: dict[str, Recording] = {}
    rejects: list[Reject] = []
    for row in rows:
        if isinstance(row, Reject):
            rejects.append(row)
        elif row.recording_id in recordings:
            rejects.append(Reject(item=row.recording_id, stage="prepare", reason="duplicate_id", source=source,
                                  recording_id=row.recording_id, detail=duplicate(row)))
        else:
            recordings[row.recording_id] = row
    yield from rejects
    for rid in sorted(recordings):
        yield recordings[rid]
