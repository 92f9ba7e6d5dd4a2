"""storage.extract: happy paths, hostile archives (traversal, links, special files, bombs) and resumability."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from storage.extract import (
    ArchiveFormatError,
    ArchiveTooLarge,
    ExtractLimits,
    UnsafeArchive,
    extract,
    marker_path,
)

# ---------------------------------------------------------------------------------------------------------------
# archive builders: entries are ("file", name, bytes) | ("dir", name) | ("symlink", name, target)
#                   | ("hardlink", name, target) | ("fifo", name) | ("chr", name)


def make_tar(path: Path, entries: list[tuple], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for kind, name, *rest in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            data = None
            if kind == "file":
                data = rest[0]
                ti.size, ti.mode = len(data), (rest[1] if len(rest) > 1 else 0o644)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path: Path, entries: list[tuple], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for kind, name, *rest in entries:
            zi = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 6))
            zi.create_system = 3
            zi.compress_type = compression
            if kind == "file":
                zi.external_attr = (stat.S_IFREG | (rest[1] if len(rest) > 1 else 0o644)) << 16
                zf.writestr(zi, rest[0])
            elif kind == "dir":
                zi.filename = name.rstrip("/") + "/"
                zi.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(zi, b"")
            elif kind == "symlink":
                zi.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(zi, rest[0].encode())
            elif kind == "fifo":
                zi.external_attr = (stat.S_IFIFO | 0o644) << 16
                zf.writestr(zi, b"")
    return path


def tree(root: Path) -> dict[str, object]:
    """path -> bytes (files), '->target' (symlinks) or None (dirs), excluding extraction markers."""
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if n.startswith(".extracted-"):
                continue
            if p.is_symlink():
                out[rel] = "->" + os.readlink(p)
            elif p.is_dir():
                out[rel] = None
            else:
                out[rel] = p.read_bytes()
    return out


def outside(tmp_path: Path, dest: Path) -> set[str]:
    """Everything under tmp_path except dest's contents (to prove nothing was written outside dest)."""
    return {k for k in tree(tmp_path) if not (k == dest.name or k.startswith(dest.name + "/"))}


HAPPY = [
    ("dir", "corpus"),
    ("dir", "corpus/wav"),
    ("file", "corpus/wav/a.wav", b"RIFF" + b"\x01" * 5000),
    ("file", "corpus/wav/b.wav", b"RIFF" + b"\x02" * 7000),
    ("file", "corpus/text.tsv", "id\tటెక్స్ట్\n".encode()),
    ("file", "corpus/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
    ("symlink", "corpus/latest.wav", "wav/b.wav"),
]


# ---------------------------------------------------------------------------------------------------------------
# happy paths


@pytest.mark.parametrize("mode,suffix", [("w:gz", ".tar.gz"), ("w:gz", ".tgz"), ("w:bz2", ".tar.bz2"),
                                         ("w:xz", ".tar.xz"), ("w", ".tar"), ("w:gz", ".bin")])
def test_tar_happy_path(tmp_path, mode, suffix):
    arc = make_tar(tmp_path / f"c{suffix}", HAPPY + [("hardlink", "corpus/a_copy.wav", "corpus/wav/a.wav")], mode)
    dest = tmp_path / "out"
    assert extract(arc, dest, progress=False) == dest
    t = tree(dest)
    assert t["corpus/wav/a.wav"] == b"RIFF" + b"\x01" * 5000
    assert t["corpus/a_copy.wav"] == t["corpus/wav/a.wav"]
    assert t["corpus/text.tsv"] == "id\tటెక్స్ట్\n".encode()
    assert t["corpus/latest.wav"] == "->wav/b.wav"
    assert (dest / "corpus/latest.wav").read_bytes() == t["corpus/wav/b.wav"]
    assert os.stat(dest / "corpus/run.sh").st_mode & 0o100
    m = json.loads(marker_path(arc, dest).read_text())
    assert m["size"] == arc.stat().st_size and m["format"] == "tar" and m["members"] == 8


@pytest.mark.parametrize("compression,suffix", [(zipfile.ZIP_DEFLATED, ".zip"), (zipfile.ZIP_STORED, ".zip"),
                                                (zipfile.ZIP_LZMA, ".dat")])
def test_zip_happy_path(tmp_path, compression, suffix):
    arc = make_zip(tmp_path / f"c{suffix}", HAPPY, compression)
    dest = tmp_path / "out"
    extract(arc, dest, progress=False)
    t = tree(dest)
    assert t["corpus/wav/b.wav"] == b"RIFF" + b"\x02" * 7000
    assert t["corpus/text.tsv"] == "id\tటెక్స్ట్\n".encode()
    assert t["corpus/latest.wav"] == "->wav/b.wav"
    assert os.stat(dest / "corpus/run.sh").st_mode & 0o100
    assert not os.stat(dest / "corpus/text.tsv").st_mode & 0o100
    assert json.loads(marker_path(arc, dest).read_text())["format"] == "zip"


def test_progress_bar_does_not_break_extraction(tmp_path):
    arc = make_tar(tmp_path / "c.tar.gz", HAPPY)
    extract(arc, tmp_path / "out", progress=True)
    arc2 = make_zip(tmp_path / "c.zip", HAPPY)
    extract(arc2, tmp_path / "out2", progress=True)
    assert tree(tmp_path / "out") == tree(tmp_path / "out2")


def test_archive_root_dot_entry_is_fine(tmp_path):
    arc = make_tar(tmp_path / "c.tar", [("dir", "."), ("file", "./a.txt", b"a")], "w")
    extract(arc, tmp_path / "out", progress=False)
    assert tree(tmp_path / "out") == {"a.txt": b"a"}


# ---------------------------------------------------------------------------------------------------------------
# hostile tars


def _refused(tmp_path: Path, arc: Path, match: str, exc=UnsafeArchive, **kw) -> None:
    dest = tmp_path / "out"
    before = outside(tmp_path, dest)
    with pytest.raises(exc, match=match):
        extract(arc, dest, progress=False, **kw)
    assert outside(tmp_path, dest) == before, "something was written outside dest"
    assert tree(dest) == {} if dest.exists() else True, "checks must run before anything is written"
    assert not marker_path(arc, dest).exists()


def test_tar_dotdot_member(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("file", "ok.txt", b"x"), ("file", "../evil", b"pwned")])
    _refused(tmp_path, arc, r"'\.\./evil'.*'\.\.'")
    assert not (tmp_path / "evil").exists()


def test_tar_nested_dotdot_member(tmp_path):
    arc = make_tar(tmp_path / "e.tar", [("file", "a/../../evil", b"pwned")], "w")
    _refused(tmp_path, arc, r"a/\.\./\.\./evil")


def test_tar_absolute_member(tmp_path):
    target = tmp_path / "abs_evil"
    arc = make_tar(tmp_path / "e.tar.gz", [("file", str(target), b"pwned")])
    _refused(tmp_path, arc, "absolute path")
    assert not target.exists()


def test_tar_symlink_to_etc(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("symlink", "etc", "/etc")])
    _refused(tmp_path, arc, r"symlink 'etc' -> '/etc'.*outside")


def test_tar_symlink_then_write_through_it(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("symlink", "d", "/tmp"), ("file", "d/evil", b"pwned")])
    _refused(tmp_path, arc, "'d")


def test_tar_relative_symlink_escape(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("dir", "a"), ("symlink", "a/up", "../../..")])
    _refused(tmp_path, arc, r"'a/up' -> '\.\./\.\./\.\.'")


def test_tar_member_under_inside_symlink_is_refused(tmp_path):
    # p -> . is harmless by itself, but p/q -> ../x would really land one level above dest
    arc = make_tar(tmp_path / "e.tar.gz", [("symlink", "p", "."), ("symlink", "p/q", "../x")])
    _refused(tmp_path, arc, "under the symlink 'p'")


def test_tar_symlink_chain_escape(tmp_path):
    # lexically s3 -> s1/s2/.. == s1 (inside), but s1 -> d and d/s2 -> .. == dest, so s3 resolves to dest/..
    arc = make_tar(tmp_path / "e.tar.gz", [("dir", "d"), ("symlink", "s1", "d"), ("symlink", "d/s2", ".."),
                                           ("symlink", "s3", "s1/s2/..")])
    _refused(tmp_path, arc, r"symlink 's3'")


def test_tar_symlink_loop(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("symlink", "a", "b/x"), ("symlink", "b", "a/y")])
    _refused(tmp_path, arc, "loop")


def test_tar_hardlink_outside(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("hardlink", "passwd", "../../../etc/passwd")])
    _refused(tmp_path, arc, "passwd")


def test_tar_hardlink_through_outside_symlink(tmp_path):
    arc = make_tar(tmp_path / "e.tar.gz", [("symlink", "s", "/etc/passwd"), ("hardlink", "h", "s")])
    _refused(tmp_path, arc, "'s'")


@pytest.mark.parametrize("kind", ["fifo", "chr"])
def test_tar_special_files(tmp_path, kind):
    arc = make_tar(tmp_path / "e.tar.gz", [(kind, "dev")])
    _refused(tmp_path, arc, r"'dev'.*(FIFO|device)")


def test_tar_too_many_members(tmp_path):
    arc = make_tar(tmp_path / "e.tar", [("file", f"f{i}", b"x") for i in range(5)], "w")
    _refused(tmp_path, arc, "max_members=3", ArchiveTooLarge, limits=ExtractLimits(max_members=3))


def test_tar_declared_size_over_limit(tmp_path):
    arc = make_tar(tmp_path / "e.tar", [("file", "big", b"\x07" * 100_000)], "w")
    _refused(tmp_path, arc, r"100000 bytes.*max_total_bytes=50000", ArchiveTooLarge,
             limits=ExtractLimits(max_total_bytes=50_000))


def test_tar_gz_bomb_ratio(tmp_path):
    arc = tmp_path / "bomb.tar.gz"
    with tarfile.open(arc, "w:gz", compresslevel=9) as tf:
        ti = tarfile.TarInfo("zeros")
        ti.size = 20 * 2**20
        tf.addfile(ti, io.BytesIO(bytes(ti.size)))
    _refused(tmp_path, arc, "max_ratio=100", ArchiveTooLarge, limits=ExtractLimits(max_ratio=100))


# ---------------------------------------------------------------------------------------------------------------
# hostile zips


def test_zip_dotdot_member(tmp_path):
    arc = make_zip(tmp_path / "e.zip", [("file", "ok.txt", b"x"), ("file", "../evil", b"pwned")])
    _refused(tmp_path, arc, r"'\.\./evil'")
    assert not (tmp_path / "evil").exists()


def test_zip_backslash_dotdot_member(tmp_path):
    arc = make_zip(tmp_path / "e.zip", [("file", "..\\evil", b"pwned")])
    _refused(tmp_path, arc, "'..'")


def test_zip_absolute_member(tmp_path):
    arc = make_zip(tmp_path / "e.zip", [("file", str(tmp_path / "abs_evil"), b"pwned")])
    _refused(tmp_path, arc, "absolute path")
    assert not (tmp_path / "abs_evil").exists()


def test_zip_symlink_outside(tmp_path):
    arc = make_zip(tmp_path / "e.zip", [("symlink", "etc", "/etc")])
    _refused(tmp_path, arc, r"symlink 'etc' -> '/etc'")


def test_zip_special_file(tmp_path):
    arc = make_zip(tmp_path / "e.zip", [("fifo", "pipe")])
    _refused(tmp_path, arc, r"'pipe'.*special file")


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """One 50 MiB member of zeros, deflated to ~50 KB (ratio ~1000)."""
    arc = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("zeros.bin", "w") as f:
            block = bytes(1 << 20)
            for _ in range(50):
                f.write(block)
    return arc


def test_zip_bomb_ratio(tmp_path, zip_bomb):
    assert zip_bomb.stat().st_size < 200_000
    _refused(tmp_path, zip_bomb, r"ratio \d+.*max_ratio=100", ArchiveTooLarge, limits=ExtractLimits(max_ratio=100))


def test_zip_bomb_total_bytes(tmp_path, zip_bomb):
    _refused(tmp_path, zip_bomb, r"52428800 bytes.*max_total_bytes=10485760", ArchiveTooLarge,
             limits=ExtractLimits(max_total_bytes=10 * 2**20, max_ratio=1e9))


def _patch_zip_sizes(data: bytearray, new_size: int) -> bytearray:
    """Rewrite the uncompressed size in every local and central header (a lying archive)."""
    i = 0
    while (i := data.find(b"PK\x03\x04", i)) >= 0:
        struct.pack_into("<I", data, i + 22, new_size)
        i += 4
    i = 0
    while (i := data.find(b"PK\x01\x02", i)) >= 0:
        struct.pack_into("<I", data, i + 24, new_size)
        i += 4
    return data


def test_zip_lying_header_cannot_pass_the_limit(tmp_path):
    honest = make_zip(tmp_path / "honest.zip", [("file", "x.bin", bytes(2_000_000))])
    arc = tmp_path / "liar.zip"
    arc.write_bytes(_patch_zip_sizes(bytearray(honest.read_bytes()), 1000))
    assert zipfile.ZipFile(arc).getinfo("x.bin").file_size == 1000
    dest = tmp_path / "out"
    with pytest.raises((ArchiveFormatError, UnsafeArchive)):
        extract(arc, dest, limits=ExtractLimits(max_total_bytes=10_000, max_ratio=1e9), progress=False)
    assert not (dest / "x.bin").exists()  # the partial member is removed
    assert not marker_path(arc, dest).exists()


# ---------------------------------------------------------------------------------------------------------------
# format detection


def test_not_an_archive(tmp_path):
    f = tmp_path / "page.tar.gz"
    f.write_bytes(b"<html><body>404 Not Found</body></html>\n")
    with pytest.raises(ArchiveFormatError, match="not a tar"):
        extract(f, tmp_path / "out", progress=False)


def test_gzip_that_is_not_a_tar(tmp_path):
    f = tmp_path / "audio.tar.gz"
    f.write_bytes(gzip.compress(b"not a tar at all" * 100))
    with pytest.raises(ArchiveFormatError, match="tar"):
        extract(f, tmp_path / "out", progress=False)


def test_truncated_tar_gz(tmp_path):
    arc = make_tar(tmp_path / "t.tar.gz", [("file", "a", os.urandom(200_000))])
    arc.write_bytes(arc.read_bytes()[:50_000])
    with pytest.raises(ArchiveFormatError, match="damaged or truncated"):
        extract(arc, tmp_path / "out", progress=False)
    assert not marker_path(arc, tmp_path / "out").exists()


def test_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError):
        extract(tmp_path / "nope.tar", tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------------
# resumability


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_marker_skips_rerun(tmp_path, fmt):
    arc = make_tar(tmp_path / "c.tar.gz", HAPPY) if fmt == "tar" else make_zip(tmp_path / "c.zip", HAPPY)
    dest = tmp_path / "out"
    extract(arc, dest, progress=False)
    first = tree(dest)
    (dest / "corpus/text.tsv").write_bytes(b"edited")
    extract(arc, dest, progress=False)  # marker matches: nothing is touched
    assert (dest / "corpus/text.tsv").read_bytes() == b"edited"
    os.utime(arc, ns=(arc.stat().st_atime_ns, arc.stat().st_mtime_ns + 10**9))  # a different copy of the archive
    extract(arc, dest, progress=False)
    assert tree(dest) == first


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_interrupted_run_is_redone(tmp_path, fmt):
    arc = make_tar(tmp_path / "c.tar.gz", HAPPY) if fmt == "tar" else make_zip(tmp_path / "c.zip", HAPPY)
    dest = tmp_path / "out"
    extract(arc, tmp_path / "ref", progress=False)
    # what a killed run may leave: a half-written file, a stale link where a file goes, no marker
    (dest / "corpus/wav").mkdir(parents=True)
    (dest / "corpus/wav/a.wav").write_bytes(b"RIFF\x01")
    os.symlink("/etc/hostname", dest / "corpus/text.tsv")
    (dest / "corpus/latest.wav").write_bytes(b"not a link yet")
    extract(arc, dest, progress=False)
    assert tree(dest) == tree(tmp_path / "ref")
    assert marker_path(arc, dest).exists()


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_symlink_already_in_dest_pointing_outside(tmp_path, fmt):
    """A link the user (or another tool) left in dest must not carry the extraction outside it."""
    arc = make_tar(tmp_path / "c.tar.gz", HAPPY) if fmt == "tar" else make_zip(tmp_path / "c.zip", HAPPY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    os.symlink(elsewhere, dest / "corpus")
    # the archive's own "corpus" directory entry replaces the stale link rather than writing through it
    extract(arc, dest, progress=False)
    assert not list(elsewhere.iterdir())
    assert (dest / "corpus").is_dir() and not (dest / "corpus").is_symlink()

    # without a directory entry for it, the link is in the way: refused, nothing written through it
    arc2 = make_tar(tmp_path / "d.tar.gz", [("file", "data/x.txt", b"x")]) if fmt == "tar" else \
        make_zip(tmp_path / "d.zip", [("file", "data/x.txt", b"x")])
    os.symlink(elsewhere, dest / "data")
    with pytest.raises(UnsafeArchive, match="data/x.txt"):
        extract(arc2, dest, progress=False)
    assert not list(elsewhere.iterdir())
