"""A corpus copy the user supplies (``--archive PATH|URL``): the download step shared by IndicTTS, Kathbath and
IndicVoices, whose releases sit behind a licence request or a Hugging Face login.

* a local directory: used in place (nothing is copied or marked);
* a local ``.parquet`` file, or a URL of one: used as it is (downloaded first when a URL);
* a local archive (tar, tar.gz, zip, ...) or a URL of one: fetched with :func:`common.fetch` (URLs go through the
  resumable downloader), extracted safely into ``target/extracted`` and marked complete, so a rerun with the same
  archive skips both steps, and a rerun without ``archive`` reuses that copy.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.sources.common import (
    MissingArchive,
    completed,
    extract_to,
    fetch,
    mark_completed,
    remove_tree,
)

EXTRACTED = "extracted"
DOWNLOADS = "downloads"


def _is_parquet(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _key(archive: str, sha256: dict | None) -> dict:
    key: dict = {"archive": archive, "sha256": dict(sorted((sha256 or {}).items()))}
    if "://" not in archive:
        p = Path(archive).expanduser().resolve()
        st = p.stat()
        key.update(archive=str(p), size=st.st_size, mtime_ns=st.st_mtime_ns)
    return key


def fetch_user_copy(name: str, target: str | Path, *, archive: str | None, sha256: dict | None = None,
                    progress: bool = True, missing: str = "") -> Path:
    """Return the local root of the user's copy of corpus ``name`` (see the module docstring).

    ``missing`` is the explanation raised in :class:`MissingArchive` when no ``archive`` is given."""
    if not archive:  # a copy fetched and extracted by an earlier run is reused
        done = Path(target) / ".completed-path"
        if (Path(target) / ".completed").exists() and done.exists() and Path(done.read_text().strip()).exists():
            return Path(done.read_text().strip())
        raise MissingArchive(missing or f"the {name} source needs your copy: matalu ingest --source {name} --archive PATH")
    archive = str(archive)
    target = Path(target)
    if "://" not in archive:
        p = Path(archive).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"--archive {archive}: no such file or directory")
        if p.is_dir():
            return p.resolve()
    key = _key(archive, sha256)
    dest = target / EXTRACTED
    if completed(target, key):
        marked = target / ".completed-path"
        if marked.exists():
            return Path(marked.read_text().strip())
        return dest
    if (target / ".completed").exists():  # a different archive was prepared here before: start clean
        remove_tree(dest)
        (target / ".completed").unlink()
    local = fetch(None, target / DOWNLOADS, archive=archive, sha256=sha256, progress=progress)
    if _is_parquet(local):
        root = local.resolve()
    else:
        root = extract_to(local, dest, progress=progress).resolve()
    (target / ".completed-path").parent.mkdir(parents=True, exist_ok=True)
    (target / ".completed-path").write_text(str(root) + "\n")
    mark_completed(target, key)
    return root
