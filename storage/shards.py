"""Deterministic WebDataset tar shards (docs/DESIGN.md §4).

Members are written in the order given, with mtime 0, uid/gid 0, empty owner names and mode 0644, so the same
samples give byte-identical tars. Keys contain no dots (webdataset splits a member name at the first dot into
key and extension). A writer rolls to a new part when the next sample would pass ``max_bytes`` or
``max_samples``; each part is written to a local temp file, hashed, then committed to its URI atomically.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from storage.uri import join, list_files, put_file, read_bytes, read_range, sha256_file

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_TAR_BLOCK = 512


def member_key_ok(key: str) -> bool:
    """A WebDataset key: letters, digits, '_' and '-' only (no dots, no slashes)."""
    return bool(_KEY_RE.match(key))


@dataclass
class ShardInfo:
    uri: str
    n_samples: int
    bytes: int
    sha256: str
    keys: list[str] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)  # per key: (offset, bytes) of its members in the tar


def _member_size(n: int) -> int:
    return _TAR_BLOCK + ((n + _TAR_BLOCK - 1) // _TAR_BLOCK) * _TAR_BLOCK


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.mode = 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.type = tarfile.REGTYPE
    return ti


class ShardWriter:
    """Write samples ``{key: {ext: bytes}}`` into size/count-limited tar parts.

    ``uri_for_part(i)`` names part ``i`` (0, 1, …). Use as a context manager; ``close()`` returns the
    committed parts as :class:`ShardInfo`.
    """

    def __init__(
        self,
        uri_for_part: Callable[[int], str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_samples: int = 1000,
        tmp_dir: str | None = None,
    ) -> None:
        if max_samples < 1 or max_bytes < 2 * _TAR_BLOCK:
            raise ValueError("shard limits must allow at least one sample")
        self._uri_for_part = uri_for_part
        self.max_bytes = max_bytes
        self.max_samples = max_samples
        self._tmp = tempfile.TemporaryDirectory(prefix="matalu-shard-", dir=tmp_dir)
        self._part = -1
        self._tar: tarfile.TarFile | None = None
        self._path: Path | None = None
        self._n = 0
        self._bytes = 0
        self._keys: list[str] = []
        self._spans: list[tuple[int, int]] = []
        self._seen: set[str] = set()
        self._where: dict[str, tuple[int, int, int]] = {}  # key -> (part, offset, bytes)
        self.shards: list[ShardInfo] = []

    # -- parts ---------------------------------------------------------------------------------------------
    def _open_part(self) -> None:
        self._part += 1
        self._path = Path(self._tmp.name) / f"part-{self._part:05d}.tar"
        self._tar = tarfile.open(self._path, "w", format=tarfile.GNU_FORMAT)
        self._n = 0
        self._bytes = 2 * _TAR_BLOCK  # end-of-archive blocks
        self._keys = []
        self._spans = []

    def _close_part(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        assert self._path is not None
        size = self._path.stat().st_size
        digest = sha256_file(self._path)
        dest = self._uri_for_part(self._part)
        put_file(self._path, dest)
        self.shards.append(ShardInfo(uri=dest, n_samples=self._n, bytes=size, sha256=digest, keys=self._keys,
                                     spans=self._spans))

    # -- samples -------------------------------------------------------------------------------------------
    def write(self, key: str, members: dict[str, bytes]) -> int:
        """Add one sample; returns the index of the part it went into. Extensions are written sorted."""
        if not member_key_ok(key):
            raise ValueError(f"invalid shard key {key!r}: use letters, digits, '_' and '-' (no dots)")
        if key in self._seen:
            raise ValueError(f"duplicate shard key {key!r}")
        if not members:
            raise ValueError(f"sample {key!r} has no members")
        size = sum(_member_size(len(b)) for b in members.values())
        if self._tar is None or self._n >= self.max_samples or (self._n > 0 and self._bytes + size > self.max_bytes):
            self._close_part()
            self._open_part()
        assert self._tar is not None
        start = self._tar.offset
        for ext in sorted(members):
            data = members[ext]
            self._tar.addfile(_tarinfo(f"{key}.{ext}", len(data)), io.BytesIO(data))
        self._seen.add(key)
        self._keys.append(key)
        self._spans.append((start, self._tar.offset - start))
        self._where[key] = (self._part, start, self._tar.offset - start)
        self._n += 1
        self._bytes += size
        return self._part

    def location(self, key: str) -> tuple[str, int, int]:
        """Where sample ``key`` went, once its part is committed: (shard URI, offset, bytes) of its members (tar
        headers and data) in that shard; :func:`read_sample_at` reads them back with one ranged read."""
        part, offset, nbytes = self._where[key]
        return self.shards[part].uri, offset, nbytes

    def close(self) -> list[ShardInfo]:
        self._close_part()
        self._tmp.cleanup()
        return self.shards

    def abort(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        self._tmp.cleanup()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def shard_members(data: bytes) -> Iterator[tuple[str, str, bytes]]:
    """(key, ext, bytes) for each regular member of a tar held in memory, in archive order."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for ti in tf:
            if not ti.isreg():
                continue
            name = ti.name.rsplit("/", 1)[-1]
            key, _, ext = name.partition(".")
            f = tf.extractfile(ti)
            assert f is not None
            yield key, ext, f.read()


def read_sample_at(uri: str, offset: int, nbytes: int, key: str) -> dict[str, bytes]:
    """Sample ``key``'s members ``{ext: bytes}`` from the byte span ``ShardWriter.location`` recorded (one ranged
    read of ``nbytes``, not the whole shard). A span that does not hold exactly that sample is an error."""
    members: dict[str, bytes] = {}
    try:
        for k, ext, blob in shard_members(read_range(uri, offset, nbytes)):
            if k != key:
                raise ValueError(f"bytes {offset}..{offset + nbytes} of {uri} hold {k!r}, not {key!r}")
            members[ext] = blob
    except tarfile.TarError as e:
        raise ValueError(f"bytes {offset}..{offset + nbytes} of {uri} are not sample {key!r}'s tar members ({e})") from e
    if not members:
        raise ValueError(f"bytes {offset}..{offset + nbytes} of {uri} hold no members of {key!r}")
    return members


def iter_shard(uri: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Samples of a shard as (key, {ext: bytes}), grouped the way webdataset groups them."""
    cur_key: str | None = None
    cur: dict[str, bytes] = {}
    for key, ext, blob in shard_members(read_bytes(uri)):
        if key != cur_key and cur_key is not None:
            yield cur_key, cur
            cur = {}
        cur_key = key
        cur[ext] = blob
    if cur_key is not None:
        yield cur_key, cur


def segment_shards(uri: str) -> list[str]:
    """Segment shard URIs under ``uri`` (an ingest output: its ``segments/`` folder is used when present)."""
    seg = join(uri, "segments")
    files = list_files(seg, ".tar")
    if not files:
        files = list_files(uri, ".tar")
    files = [f for f in files if "/tokens/" not in f]
    if not files:
        raise FileNotFoundError(f"no segment shards (*.tar) under {uri}")
    return files
