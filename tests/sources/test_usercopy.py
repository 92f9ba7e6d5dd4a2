"""fetch_user_copy with a list of archives: one extracted folder each, a folder used in place, reruns."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipelines.sources.common import MissingArchive
from pipelines.sources.usercopy import fetch_user_copy, user_copy_roots
from tests.httpserver import http_server  # noqa: F401


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_list_of_archives(http_server, tmp_path):  # noqa: F811
    (tmp_path / "train.tar.gz").write_bytes(_tar_gz({"c/train/a.txt": b"train"}))
    url = http_server.add("test.zip", _zip({"c/test/b.txt": b"test"}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("in place")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "train.tar.gz").write_bytes(_tar_gz({"c/dev/d.txt": b"dev"}))  # the same file name again
    target = tmp_path / "copy"
    archives = [str(tmp_path / "train.tar.gz"), url, str(tmp_path / "other"), str(tmp_path / "sub" / "train.tar.gz")]
    checked = []
    roots = fetch_user_copy("demo", target, archive=archives, progress=False,
                            check=lambda root, archive: checked.append((root, archive)))
    assert roots == [(target / "extracted" / "train").resolve(), (target / "extracted" / "test").resolve(),
                     (tmp_path / "other").resolve(), (target / "extracted" / "train-2").resolve()]
    assert checked == list(zip(roots, archives))
    assert (roots[0] / "c/train/a.txt").read_bytes() == b"train"
    assert (roots[1] / "c/test/b.txt").read_bytes() == b"test"
    assert (roots[3] / "c/dev/d.txt").read_bytes() == b"dev"
    assert user_copy_roots(target) == roots

    n = http_server.count()  # a rerun with the same archives, or with none, reuses the copy
    assert fetch_user_copy("demo", target, archive=archives, progress=False) == roots
    assert fetch_user_copy("demo", target, archive=[], progress=False) == roots
    assert http_server.count() == n

    # another list: the earlier extraction is dropped; a single archive in a list still gets its own folder
    assert fetch_user_copy("demo", target, archive=[url], progress=False) == [(target / "extracted" / "test").resolve()]
    assert not (target / "extracted" / "train").exists()


def test_list_errors(tmp_path):
    with pytest.raises(MissingArchive, match="bring your own"):
        fetch_user_copy("demo", tmp_path / "copy", archive=[], missing="bring your own")
    with pytest.raises(FileNotFoundError, match="no such file"):
        fetch_user_copy("demo", tmp_path / "copy", archive=[str(tmp_path / "nope.tar.gz")])
    (tmp_path / "bad.tar.gz").write_bytes(_tar_gz({"x.txt": b"x"}))

    def check(root: Path, archive: str) -> None:
        raise FileNotFoundError(f"not the corpus: {archive}")

    with pytest.raises(FileNotFoundError, match="not the corpus"):
        fetch_user_copy("demo", tmp_path / "copy", archive=[str(tmp_path / "bad.tar.gz")], progress=False, check=check)
    assert user_copy_roots(tmp_path / "copy") is None  # a copy that failed its check is not marked complete
    with pytest.raises(MissingArchive):
        fetch_user_copy("demo", tmp_path / "copy", archive=[])
