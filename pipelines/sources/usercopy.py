"""A corpus copy the user supplies (``--archive PATH|URL``): the download step shared by the recipes whose releases
sit behind a licence request or a login (IndicTTS, Kathbath, IndicVoices, Common Voice, MUCS).

* a local directory: used in place (nothing is copied or marked);
* a local ``.parquet`` file, or a URL of one: used as it is (downloaded first when a URL);
* a local archive (tar, tar.gz, zip, ...) or a URL of one: fetched with :func:`common.fetch` (URLs go through the
  resumable downloader), extracted safely into ``target/extracted`` and marked complete, so a rerun with the same
  archive skips both steps, and a rerun without ``archive`` reuses that copy.

A list of these (e.g. separate train and test archives) is fetched the same way, each archive extracted into its
own ``target/extracted/<archive stem>``; a directory in the list is used in place, and the whole list is marked
complete (``target/.completed``, its roots one a line in ``target/.completed-path``; see :func:`user_copy_roots`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.sources.common import (
    MissingArchive,
    completed,
    extract_to,
    fetch,
    mark_completed,
    remove_tree,
)
from pipelines.sources.manifest import safe_id

EXTRACTED = "extracted"
DOWNLOADS = "downloads"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")

Check = Callable[[Path, str], None]
"""``check(root, archive)``: raises when the copy at ``root`` (from ``archive``) is not the expected corpus."""


def _is_parquet(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _identity(archive: str) -> dict:
    if "://" not in archive:
        p = Path(archive).expanduser().resolve()
        if p.is_dir():  # used in place: nothing is fetched or extracted from it
            return {"archive": str(p)}
        st = p.stat()
        return {"archive": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"archive": archive}


def _key(archive: str, sha256: dict | None) -> dict:
    return {**_identity(archive), "sha256": dict(sorted((sha256 or {}).items()))}


def _local_dir(archive: str) -> Path | None:
    """The resolved directory when ``archive`` is one; None for a file or URL; an error when nothing is there."""
    if "://" in archive:
        return None
    p = Path(archive).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"--archive {archive}: no such file or directory")
    return p.resolve() if p.is_dir() else None


def _subfolder(archive: str, used: set[str]) -> str:
    """``extracted/<stem of the archive's file name>``, made unique among ``used``."""
    name = archive.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    low = name.lower()
    stem = next((name[: -len(s)] for s in _ARCHIVE_SUFFIXES if low.endswith(s)), Path(name).stem) or "archive"
    stem = safe_id(stem)
    sub, k = f"{EXTRACTED}/{stem}", 2
    while sub in used:
        sub, k = f"{EXTRACTED}/{stem}-{k}", k + 1
    used.add(sub)
    return sub


def user_copy_roots(target: str | Path) -> list[Path] | None:
    """The root(s) of the finished user copy in ``target`` (one per archive, in order); None when there is none."""
    target = Path(target)
    done = target / ".completed-path"
    if not ((target / ".completed").exists() and done.exists()):
        return None
    roots = [Path(line.strip()) for line in done.read_text().splitlines() if line.strip()]
    return roots if roots and all(r.exists() for r in roots) else None


def _start_clean(target: Path) -> None:
    if (target / ".completed").exists():  # a different archive was prepared here before: start clean
        remove_tree(target / EXTRACTED)
        (target / ".completed").unlink()


def _fetch_one(target: Path, archive: str, dest: Path, sha256: dict | None, progress: bool) -> Path:
    local = fetch(None, target / DOWNLOADS, archive=archive, sha256=sha256, progress=progress)
    if _is_parquet(local):
        return local.resolve()
    return extract_to(local, dest, progress=progress).resolve()


def _finish(target: Path, roots: list[Path], key: dict) -> None:
    (target / ".completed-path").parent.mkdir(parents=True, exist_ok=True)
    (target / ".completed-path").write_text("".join(f"{r}\n" for r in roots))
    mark_completed(target, key)


def fetch_user_copy(name: str, target: str | Path, *, archive: str | Path | Sequence[str | Path] | None,
                    sha256: dict | None = None, progress: bool = True, missing: str = "",
                    check: Check | None = None) -> Path | list[Path]:
    """Return the local root of the user's copy of corpus ``name`` (see the module docstring); for a list of
    archives, the list of their roots (in the same order).

    ``missing`` is the explanation raised in :class:`MissingArchive` when no ``archive`` is given. ``check``, when
    given, is called on each root before it is marked complete (and on a directory used in place)."""
    if isinstance(archive, (list, tuple)):
        return _fetch_many(name, Path(target), [str(a).strip() for a in archive if str(a).strip()],
                           sha256=sha256, progress=progress, missing=missing, check=check)
    if not archive:  # a copy fetched and extracted by an earlier run is reused
        done = Path(target) / ".completed-path"
        if (Path(target) / ".completed").exists() and done.exists() and Path(done.read_text().strip()).exists():
            return Path(done.read_text().strip())
        raise MissingArchive(missing or f"the {name} source needs your copy: matalu ingest --source {name} --archive PATH")
    archive = str(archive)
    target = Path(target)
    there = _local_dir(archive)
    if there is not None:
        if check:
            check(there, archive)
        return there
    key = _key(archive, sha256)
    dest = target / EXTRACTED
    if completed(target, key):
        marked = target / ".completed-path"
        if marked.exists():
            return Path(marked.read_text().strip())
        return dest
    _start_clean(target)
    root = _fetch_one(target, archive, dest, sha256, progress)
    if check:
        check(root, archive)
    _finish(target, [root], key)
    return root


def _fetch_many(name: str, target: Path, archives: list[str], *, sha256: dict | None, progress: bool,
                missing: str, check: Check | None) -> list[Path]:
    if not archives:  # a copy fetched and extracted by an earlier run is reused
        roots = user_copy_roots(target)
        if roots is not None:
            return roots
        raise MissingArchive(missing or f"the {name} source needs your copy: matalu ingest --source {name} --archive PATH")
    dirs = [_local_dir(a) for a in archives]
    key = {"archives": [_identity(a) for a in archives], "sha256": dict(sorted((sha256 or {}).items()))}
    if completed(target, key) and (roots := user_copy_roots(target)) is not None:
        return roots
    _start_clean(target)
    roots, used = [], set()
    for a, there in zip(archives, dirs):
        root = there or _fetch_one(target, a, target / _subfolder(a, used), sha256, progress)
        if check:
            check(root, a)
        roots.append(root)
    _finish(target, roots, key)
    return roots
