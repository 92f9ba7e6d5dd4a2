"""Safe, resumable extraction of .tar / .tar.gz / .tgz / .tar.bz2 / .tar.xz and .zip archives (docs/DESIGN.md §5).

* The format is detected from the file's first bytes, not its suffix.
* Everything is checked *before* anything is written: member count, declared total size and the
  uncompressed/compressed ratio against :class:`ExtractLimits` (``ArchiveTooLarge``); then every member name
  and link (``UnsafeArchive``, naming the member). Refused: absolute paths, ``..`` components, NUL bytes,
  device/FIFO/socket files, symlinks or hardlinks that resolve outside ``dest`` (resolution follows the
  archive's own symlinks, so chains are caught too), and members stored *under* a symlink member.
* Tar members are then extracted with Python's ``tarfile`` "data" filter as a second line of defence (its
  errors become ``UnsafeArchive`` too). Zip members are written here, counting the bytes that actually come out,
  so a header that lies about sizes cannot get past ``max_total_bytes``.
* When extraction finishes, ``dest/.extracted-<archive name>`` records the archive's size and mtime; a rerun
  with a matching marker does nothing. A run that was interrupted left no marker, so the rerun extracts again
  over whatever is there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import lzma
import os
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger("matalu.storage.extract")

MARKER_PREFIX = ".extracted-"
_COPY_CHUNK = 1 << 20
_MAX_LINK_TARGET = 4096
_MAX_LINK_DEPTH = 40


class UnsafeArchive(Exception):
    """The archive would write outside its destination (or write something that is not plain data)."""


class ArchiveTooLarge(UnsafeArchive):
    """The archive is over an :class:`ExtractLimits` limit (size, member count or compression ratio)."""


class ArchiveFormatError(ValueError):
    """Not a supported archive, or a damaged one."""


@dataclass(frozen=True)
class ExtractLimits:
    """Guards against archive bombs. ``max_ratio`` is total uncompressed bytes over the archive's file size."""

    max_total_bytes: int = 200 * 2**30
    max_members: int = 2_000_000
    max_ratio: float = 1000.0


def marker_path(archive: str | Path, dest: str | Path) -> Path:
    """Where :func:`extract` records that ``archive`` was fully extracted into ``dest``."""
    return Path(dest) / f"{MARKER_PREFIX}{Path(archive).name}"


def extract(archive: str | Path, dest: str | Path, *, limits: ExtractLimits = ExtractLimits(),
            progress: bool = True) -> Path:
    """Extract ``archive`` into ``dest`` after checking it is safe and within ``limits``; return ``dest``.

    Skips the work when ``dest`` holds this archive's completion marker (same size and mtime)."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    st = archive.stat()
    stamp = {"archive": archive.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    marker = marker_path(archive, dest)
    if _marker_matches(marker, stamp):
        log.debug("%s already extracted into %s (marker %s)", archive, dest, marker.name)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    kind = _detect(archive)
    if kind == "zip":
        n, total = _extract_zip(archive, dest, limits, progress)
    else:
        n, total = _extract_tar(archive, dest, limits, progress)
    _write_json_atomic(marker, {**stamp, "format": kind, "members": n, "bytes": total})
    log.info("extracted %s into %s (%d members, %d bytes)", archive, dest, n, total)
    return dest


# ---------------------------------------------------------------------------------------------------------------
# Marker


def _marker_matches(marker: Path, stamp: dict) -> bool:
    try:
        data = json.loads(marker.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        log.warning("unreadable extraction marker %s; extracting again", marker)
        return False
    if all(data.get(k) == v for k, v in stamp.items()):
        return True
    log.info("%s was written for a different copy of %s (size/mtime changed); extracting again",
             marker, stamp["archive"])
    return False


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------
# Format detection


def _detect(archive: Path) -> str:
    """"zip" or "tar" (plain or gzip/bzip2/xz compressed), from the content."""
    with open(archive, "rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        return "tar"
    other = {b"\x28\xb5\x2f\xfd": "zstd", b"\x04\x22\x4d\x18": "lz4", b"7z\xbc\xaf": "7z", b"Rar!": "rar"}
    if head[:4] in other:
        raise ArchiveFormatError(
            f"{archive}: {other[head[:4]]} archives are not supported; convert it to .tar.gz/.tar.xz/.zip "
            "(e.g. `zstd -d FILE` for a .tar.zst) and extract that"
        )
    if zipfile.is_zipfile(archive):  # zips with a prefix (self-extracting) have no magic at byte 0
        return "zip"
    if tarfile.is_tarfile(archive):  # pre-POSIX (v7) tars have no magic
        return "tar"
    raise ArchiveFormatError(
        f"{archive}: not a tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) or zip archive (first bytes "
        f"{head[:8].hex()}); if it was downloaded, the download may be truncated or an HTML error page: "
        "delete it and download again"
    )


# ---------------------------------------------------------------------------------------------------------------
# Member checks shared by tar and zip


@dataclass
class _Member:
    name: str  # path inside the archive, '/'-separated, without '.' components or a leading './'
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    size: int = 0
    link: str = ""  # symlink target as stored, or hardlink target (an archive path)


def _clean_name(raw: str, archive: Path, what: str = "member") -> str:
    """The member path without '.' components; UnsafeArchive for absolute paths, '..' and NUL bytes."""
    if "\x00" in raw:
        raise UnsafeArchive(f"{archive.name}: refusing {what} {raw!r}: NUL byte in its name")
    probe = raw.replace("\\", "/")  # '\' is a separator on Windows: refuse '..\\' and 'C:\\' there too
    if probe.startswith("/") or (len(probe) >= 2 and probe[1] == ":" and probe[0].isalpha()):
        raise UnsafeArchive(
            f"{archive.name}: refusing {what} {raw!r}: absolute path (members must be relative to the "
            "destination); the archive is malformed or malicious"
        )
    if ".." in probe.split("/"):
        raise UnsafeArchive(
            f"{archive.name}: refusing {what} {raw!r}: it has a '..' component that could write outside the "
            "destination; the archive is malformed or malicious"
        )
    return "/".join(p for p in raw.split("/") if p not in ("", "."))


def _member_name(raw: str, kind: str, archive: Path) -> str:
    name = _clean_name(raw, archive)
    if not name and kind != "dir":
        raise UnsafeArchive(f"{archive.name}: refusing member {raw!r}: a {kind} cannot replace the destination "
                            "directory itself")
    return name


class _LinkResolver:
    """Resolves paths inside the destination following the archive's own symlinks, the way the filesystem will
    once they exist. ``None`` means the path leaves the destination."""

    def __init__(self, symlinks: dict[str, str], archive: Path) -> None:
        self.symlinks, self.archive = symlinks, archive
        self._cache: dict[str, tuple[str, ...] | None] = {}
        self._active: set[str] = set()

    def resolve(self, parts: Iterable[str]) -> tuple[str, ...] | None:
        out: list[str] = []
        for p in parts:
            if p in ("", "."):
                continue
            if p == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(p)
            key = "/".join(out)
            if key in self.symlinks:
                target = self._link(key)
                if target is None:
                    return None
                out = list(target)
        return tuple(out)

    def _link(self, key: str) -> tuple[str, ...] | None:
        if key in self._cache:
            return self._cache[key]
        if key in self._active or len(self._active) > _MAX_LINK_DEPTH:
            raise UnsafeArchive(f"{self.archive.name}: refusing symlink {key!r}: symlink loop or chain too deep")
        self._active.add(key)
        try:
            target = self.symlinks[key]
            # The symlink's parent directories are real directories (no member lies under a symlink), so the
            # target is resolved from the lexical parent.
            parent = key.split("/")[:-1]
            resolved = None if target.startswith("/") else self.resolve(parent + target.split("/"))
        finally:
            self._active.discard(key)
        self._cache[key] = resolved
        return resolved


def _check_members(members: list[_Member], archive: Path) -> None:
    """UnsafeArchive for members under a symlink and links that resolve outside the destination."""
    symlinks = {m.name: m.link for m in members if m.kind == "symlink"}
    if symlinks:
        for m in members:
            parts = m.name.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in symlinks:
                    raise UnsafeArchive(
                        f"{archive.name}: refusing member {m.name!r}: it lies under the symlink {prefix!r} "
                        "(writing through archive symlinks is how archives escape their destination)"
                    )
    resolver = _LinkResolver(symlinks, archive)
    for m in members:
        if m.kind == "symlink":
            if not m.link:
                raise UnsafeArchive(f"{archive.name}: refusing symlink {m.name!r}: empty target")
            if "\x00" in m.link:
                raise UnsafeArchive(f"{archive.name}: refusing symlink {m.name!r}: NUL byte in its target")
            if m.link.startswith("/") or resolver.resolve(m.name.split("/")[:-1] + m.link.split("/")) is None:
                raise UnsafeArchive(
                    f"{archive.name}: refusing symlink {m.name!r} -> {m.link!r}: it points outside the "
                    "destination; the archive is malformed or malicious"
                )
        elif m.kind == "hardlink":
            target = _clean_name(m.link, archive, what=f"hardlink {m.name!r} to")
            if not target or resolver.resolve(target.split("/")) is None:
                raise UnsafeArchive(
                    f"{archive.name}: refusing hardlink {m.name!r} -> {m.link!r}: it points outside the destination"
                )


def _check_totals(archive: Path, size: int, n: int, total: int, limits: ExtractLimits, *, final: bool) -> None:
    """ArchiveTooLarge when the counts so far are over a limit (``final``: the counts are complete). ``size`` is
    the archive's file size."""
    size = max(size, 1)
    what = "declares" if final else "declares at least"
    if n > limits.max_members:
        raise ArchiveTooLarge(
            f"{archive.name}: {what} {n} members, over ExtractLimits.max_members={limits.max_members}; "
            "if the archive is trusted, raise max_members"
        )
    if total > limits.max_total_bytes:
        raise ArchiveTooLarge(
            f"{archive.name}: {what} {total} bytes uncompressed, over ExtractLimits.max_total_bytes="
            f"{limits.max_total_bytes}; if the archive is trusted and the disk has room, raise max_total_bytes"
        )
    if total / size > limits.max_ratio:
        raise ArchiveTooLarge(
            f"{archive.name}: {what} {total} bytes uncompressed from {size} bytes (ratio {total / size:.0f}), "
            f"over ExtractLimits.max_ratio={limits.max_ratio:g}: this looks like a decompression bomb; if the "
            "archive is trusted, raise max_ratio"
        )


def _progress(total: int, label: str, enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    p = Progress(TextColumn(f"[bold]extract {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                 TimeRemainingColumn(), console=Console(stderr=True))
    p.add_task("", total=total)
    return p


def _within(root: Path, path: Path) -> bool:
    """Whether ``path`` (existing or not) really lies inside ``root`` (a resolved path) once symlinks resolve."""
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _ensure_within(root: Path, path: Path, archive: Path, name: str) -> None:
    if not _within(root, path):
        raise UnsafeArchive(
            f"{archive.name}: refusing member {name!r}: {path} resolves to {os.path.realpath(path)}, outside the "
            f"destination (a symlink already in {root} points out of it; remove it and retry)"
        )


def _clear_for(path: Path, is_dir: bool) -> None:
    """Make room for a member at ``path`` on a rerun: remove a symlink, or a file where a directory goes (and the
    other way round only for non-directories: an existing directory is never removed)."""
    if os.path.islink(path):
        path.unlink()
    elif is_dir and path.exists() and not path.is_dir():
        path.unlink()
    elif not is_dir and path.is_file():
        path.unlink()


# ---------------------------------------------------------------------------------------------------------------
# tar

_TAR_READ_ERRORS = (tarfile.ReadError, tarfile.CompressionError, EOFError, zlib.error, lzma.LZMAError)


def _tar_kind(ti: tarfile.TarInfo, archive: Path) -> str:
    if ti.isreg():
        return "file"
    if ti.isdir():
        return "dir"
    if ti.issym():
        return "symlink"
    if ti.islnk():
        return "hardlink"
    what = "character device" if ti.ischr() else "block device" if ti.isblk() else "FIFO" if ti.isfifo() else (
        f"type {ti.type!r}")
    raise UnsafeArchive(f"{archive.name}: refusing member {ti.name!r}: it is a {what}, not a file or directory")


def _extract_tar(archive: Path, dest: Path, limits: ExtractLimits, progress: bool) -> tuple[int, int]:
    size = archive.stat().st_size
    try:
        tf = tarfile.open(archive, "r:*")
    except _TAR_READ_ERRORS as e:
        raise ArchiveFormatError(
            f"{archive}: cannot read it as a tar archive ({e}); it may be a compressed single file or damaged: "
            "delete it and download again"
        ) from e
    with tf:
        # Pass 1: headers only. Stops as soon as a limit is passed, so a bomb costs no more than the limit.
        infos: list[tarfile.TarInfo] = []
        members: list[_Member] = []
        total = 0
        try:
            while (ti := tf.next()) is not None:
                kind = _tar_kind(ti, archive)
                name = _member_name(ti.name, kind, archive)
                infos.append(ti)
                if kind == "file":
                    total += ti.size
                if name:
                    members.append(_Member(name, kind, ti.size if kind == "file" else 0, ti.linkname))
                _check_totals(archive, size, len(infos), total, limits, final=False)
        except _TAR_READ_ERRORS as e:
            raise ArchiveFormatError(f"{archive}: damaged or truncated tar archive ({e}); delete it and download "
                                     "again") from e
        _check_totals(archive, size, len(infos), total, limits, final=True)
        _check_members(members, archive)
        real_dest = Path(os.path.realpath(dest))
        if _has_entries(real_dest):  # a rerun over an interrupted extraction: clear what is in the way
            for m in members:
                path = real_dest / m.name
                if _within(real_dest, path.parent):
                    _clear_for(path, m.kind == "dir")
        for ti in infos:  # the data filter is the second line of defence; fail before writing any member
            try:
                tarfile.data_filter(ti, str(real_dest))
            except tarfile.FilterError as e:
                raise UnsafeArchive(f"{archive.name}: refusing member {ti.name!r}: {e}") from e

        # Pass 2: extract.
        bar = _progress(total, archive.name, progress)

        def feed() -> Iterator[tarfile.TarInfo]:
            for ti in infos:
                yield ti
                if bar is not None and ti.isreg():
                    bar.update(bar.task_ids[0], advance=ti.size)

        try:
            with bar or contextlib.nullcontext():
                tf.extractall(real_dest, members=feed(), filter="data")
        except tarfile.FilterError as e:
            raise UnsafeArchive(f"{archive.name}: refusing member {e.tarinfo.name!r}: {e}") from e
        except _TAR_READ_ERRORS as e:
            raise ArchiveFormatError(f"{archive}: damaged or truncated tar archive ({e}); delete it and download "
                                     f"again (the partial extraction in {dest} is redone on the next run)") from e
    return len(infos), total


def _has_entries(dest: Path) -> bool:
    return any(not p.name.startswith(MARKER_PREFIX) for p in dest.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# zip

_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError)


def _zip_member(zi: zipfile.ZipInfo, archive: Path) -> _Member:
    mode = (zi.external_attr >> 16) & 0xFFFF if zi.create_system == 3 else 0
    if zi.flag_bits & 0x1:
        raise ArchiveFormatError(f"{archive}: member {zi.filename!r} is encrypted; decrypt the archive first")
    if zi.is_dir() or stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        raise UnsafeArchive(
            f"{archive.name}: refusing member {zi.filename!r}: it is a special file (mode {oct(mode)}), not a "
            "file or directory"
        )
    else:
        kind = "file"
    return _Member(_member_name(zi.filename, kind, archive), kind, 0 if kind == "dir" else zi.file_size)


def _extract_zip(archive: Path, dest: Path, limits: ExtractLimits, progress: bool) -> tuple[int, int]:
    size = archive.stat().st_size
    try:
        zf = zipfile.ZipFile(archive)
    except _ZIP_READ_ERRORS as e:
        raise ArchiveFormatError(f"{archive}: cannot read it as a zip archive ({e}); delete it and download "
                                 "again") from e
    with zf:
        infos = zf.infolist()
        _check_totals(archive, size, len(infos), 0, limits, final=True)
        pairs = [(zi, _zip_member(zi, archive)) for zi in infos]
        total = sum(m.size for _, m in pairs if m.kind in ("file", "symlink"))
        _check_totals(archive, size, len(infos), total, limits, final=True)
        for zi, m in pairs:
            if m.kind == "symlink":
                if zi.file_size > _MAX_LINK_TARGET:
                    raise UnsafeArchive(f"{archive.name}: refusing symlink {zi.filename!r}: target too long")
                try:
                    m.link = zf.read(zi)[:_MAX_LINK_TARGET].decode("utf-8", "surrogateescape")
                except _ZIP_READ_ERRORS as e:
                    raise ArchiveFormatError(f"{archive}: damaged member {zi.filename!r} ({e})") from e
        members = [m for _, m in pairs if m.name]
        _check_members(members, archive)

        real_dest = Path(os.path.realpath(dest))
        bar = _progress(total, archive.name, progress)
        written_total = 0
        with bar or contextlib.nullcontext():
            for zi, m in pairs:
                if not m.name or m.kind != "dir":
                    continue
                path = real_dest / m.name
                _ensure_within(real_dest, path.parent, archive, zi.filename)
                _clear_for(path, True)
                path.mkdir(parents=True, exist_ok=True)
            for zi, m in pairs:
                if m.kind != "file":
                    continue
                path = real_dest / m.name
                _ensure_within(real_dest, path.parent, archive, zi.filename)
                path.parent.mkdir(parents=True, exist_ok=True)
                _clear_for(path, False)
                written = 0
                try:
                    with zf.open(zi) as src, open(path, "xb") as out:
                        while chunk := src.read(_COPY_CHUNK):
                            written += len(chunk)
                            written_total += len(chunk)
                            if written > zi.file_size:
                                raise UnsafeArchive(
                                    f"{archive.name}: refusing member {zi.filename!r}: it inflates past the "
                                    f"{zi.file_size} bytes its header declares (a crafted archive)"
                                )
                            if written_total > limits.max_total_bytes:
                                raise ArchiveTooLarge(
                                    f"{archive.name}: wrote {written_total} bytes, over ExtractLimits."
                                    f"max_total_bytes={limits.max_total_bytes}, though its headers declared "
                                    f"{total} (a crafted archive)"
                                )
                            out.write(chunk)
                            if bar is not None:
                                bar.update(bar.task_ids[0], advance=len(chunk))
                except _ZIP_READ_ERRORS as e:
                    path.unlink(missing_ok=True)
                    raise ArchiveFormatError(
                        f"{archive}: member {zi.filename!r} is damaged ({e}): its data does not match its header; "
                        "delete the archive and download it again"
                    ) from e
                except UnsafeArchive:
                    path.unlink(missing_ok=True)
                    raise
                _set_zip_attrs(path, zi)
            for zi, m in pairs:  # symlinks last: no file above was written through one
                if m.kind != "symlink":
                    continue
                path = real_dest / m.name
                _ensure_within(real_dest, path.parent, archive, zi.filename)
                path.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(path):
                    if path.is_dir() and not path.is_symlink():
                        raise UnsafeArchive(f"{archive.name}: refusing symlink {m.name!r}: a directory of that "
                                            "name is in the way")
                    path.unlink()
                os.symlink(m.link, path)
                if not _within(real_dest, path):  # belt and braces: the checks above already resolved it
                    resolved = os.path.realpath(path)
                    path.unlink()
                    raise UnsafeArchive(f"{archive.name}: refusing symlink {m.name!r} -> {m.link!r}: it resolves "
                                        f"to {resolved}, outside the destination")
    return len(infos), total


def _set_zip_attrs(path: Path, zi: zipfile.ZipInfo) -> None:
    """Keep the executable bit (never setuid/setgid or group/other write) and the member's mtime."""
    mode = (zi.external_attr >> 16) & 0o777 if zi.create_system == 3 else 0
    if mode & 0o100:
        os.chmod(path, 0o755)
    try:
        mtime = time.mktime(zi.date_time + (0, 0, -1))
        os.utime(path, (mtime, mtime))
    except (OverflowError, ValueError, OSError):
        pass
