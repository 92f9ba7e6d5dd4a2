"""storage.download against a local HTTP server with injected faults (no network beyond 127.0.0.1)."""

from __future__ import annotations

import hashlib
import pickle
import random

import pytest

from storage.download import (
    ChecksumMismatch,
    DownloadError,
    DownloadSpec,
    HostNotAllowed,
    HttpError,
    download,
    host_allowed,
    resolve_url,
)
from tests.httpserver import http_server  # noqa: F401

FAST = dict(backoff_s=0.0, timeout_s=5, progress=False)


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def data() -> bytes:
    return payload()


def test_plain_download_with_sha256(http_server, tmp_path, data):
    url = http_server.add("corpus.tar", data)
    out = download(DownloadSpec(url, sha256=sha(data), size=len(data)), tmp_path / "dl", **FAST)
    assert out == tmp_path / "dl" / "corpus.tar"
    assert out.read_bytes() == data
    assert not (tmp_path / "dl" / "corpus.tar.part").exists()
    assert http_server.count("/corpus.tar") == 1
    # we ask for identity encoding so Range offsets are file offsets
    assert http_server.requests[0].headers.get("Accept-Encoding") == "identity"


def test_progress_bar_does_not_break_download(http_server, tmp_path, data):
    url = http_server.add("p.bin", data)
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, backoff_s=0, progress=True, chunk_size=8192)
    assert out.read_bytes() == data


def test_dropped_connection_resumes_with_range(http_server, tmp_path, data):
    url = http_server.add("big.bin", data)
    http_server.drop_after(100_000, times=2)
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, chunk_size=4096, **FAST)
    assert sha(out.read_bytes()) == sha(data)
    ranges = http_server.ranges("/big.bin")
    assert ranges[0] is None
    assert len(ranges) == 3
    # each retry resumed from what was already on disk
    assert ranges[1] == "bytes=100000-" and ranges[2] == "bytes=200000-"
    assert http_server.statuses("/big.bin") == [200, 206, 206]


def test_resume_from_part_left_by_an_earlier_run(http_server, tmp_path, data):
    url = http_server.add("c.bin", data)
    (tmp_path / "c.bin.part").write_bytes(data[:123_457])
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert http_server.ranges("/c.bin") == ["bytes=123457-"]


def test_complete_part_gets_416_and_is_verified(http_server, tmp_path, data):
    url = http_server.add("d.bin", data)
    (tmp_path / "d.bin.part").write_bytes(data)
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert http_server.statuses("/d.bin") == [416]


def test_complete_part_with_pinned_size_needs_no_request(http_server, tmp_path, data):
    url = http_server.add("e.bin", data)
    (tmp_path / "e.bin.part").write_bytes(data)
    out = download(DownloadSpec(url, sha256=sha(data), size=len(data)), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert http_server.count() == 0


def test_server_ignoring_range_restarts_from_zero(http_server, tmp_path, data):
    url = http_server.add("f.bin", data)
    http_server.ignore_range = True
    http_server.drop_after(50_000, times=1)
    (tmp_path / "f.bin.part").write_bytes(b"garbage that must not survive")
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert http_server.statuses("/f.bin") == [200, 200]
    assert all(r is not None for r in http_server.ranges("/f.bin"))


def test_checksum_mismatch_moves_file_aside(http_server, tmp_path, data):
    url = http_server.add("g.bin", data)
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatch) as ei:
        download(DownloadSpec(url, sha256=wrong), tmp_path, **FAST)
    e = ei.value
    assert e.expected == wrong and e.actual == sha(data) and e.kind == "sha256"
    assert "--sha256 g.bin=" + sha(data) in str(e)
    assert not (tmp_path / "g.bin").exists()
    assert not (tmp_path / "g.bin.part").exists()
    assert (tmp_path / "g.bin.bad").read_bytes() == data


def test_size_mismatch(http_server, tmp_path, data):
    url = http_server.add("h.bin", data)
    with pytest.raises(ChecksumMismatch) as ei:
        download(DownloadSpec(url, size=len(data) + 1), tmp_path, **FAST)
    assert ei.value.kind == "size"
    assert not (tmp_path / "h.bin").exists()


def test_404_is_not_retried(http_server, tmp_path):
    url = http_server.url("missing.bin")
    with pytest.raises(HttpError) as ei:
        download(DownloadSpec(url), tmp_path / "dl", retries=5, **FAST)
    assert ei.value.status == 404 and ei.value.url == url
    assert "404" in str(ei.value) and "missing.bin" in str(ei.value)
    assert http_server.count("/missing.bin") == 1
    assert not list((tmp_path / "dl").iterdir())


@pytest.mark.parametrize("status", [403, 410])
def test_other_permanent_errors_are_not_retried(http_server, tmp_path, data, status):
    url = http_server.add("i.bin", data)
    http_server.fail("/i.bin", status)
    with pytest.raises(HttpError) as ei:
        download(DownloadSpec(url), tmp_path, retries=5, **FAST)
    assert ei.value.status == status
    assert http_server.count("/i.bin") == 1


def test_500_twice_then_ok(http_server, tmp_path, data):
    url = http_server.add("j.bin", data)
    http_server.fail("/j.bin", 500, times=2)
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, retries=3, **FAST)
    assert out.read_bytes() == data
    assert http_server.statuses("/j.bin") == [500, 500, 200]


def test_429_is_retried(http_server, tmp_path, data):
    url = http_server.add("k.bin", data)
    http_server.fail("/k.bin", 429, times=1)
    out = download(DownloadSpec(url), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert http_server.statuses("/k.bin") == [429, 200]


def test_persistent_500_gives_up_after_retries(http_server, tmp_path, data):
    url = http_server.add("l.bin", data)
    http_server.fail("/l.bin", 503)
    with pytest.raises(HttpError) as ei:
        download(DownloadSpec(url), tmp_path, retries=2, **FAST)
    assert ei.value.status == 503
    assert "3 attempts" in str(ei.value)
    assert http_server.count("/l.bin") == 3


def test_connection_refused_is_retried_then_fails(tmp_path):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download(DownloadSpec(f"http://127.0.0.1:{port}/x.bin"), tmp_path, retries=1, **FAST)


def test_host_not_in_allow_list(http_server, tmp_path, data):
    url = http_server.add("m.bin", data)
    with pytest.raises(HostNotAllowed) as ei:
        download(DownloadSpec(url), tmp_path, allowed_hosts=["data.example.org"], **FAST)
    assert ei.value.host == "127.0.0.1"
    assert "127.0.0.1" in str(ei.value) and "--mirror" in str(ei.value)
    assert http_server.count() == 0


def test_host_in_allow_list(http_server, tmp_path, data):
    url = http_server.add("n.bin", data)
    out = download(DownloadSpec(url), tmp_path, allowed_hosts=["example.org", "127.0.0.1"], **FAST)
    assert out.read_bytes() == data


def test_mirror_override(http_server, tmp_path, data):
    http_server.add("mirror/pub/o.tar.gz", data)
    spec = DownloadSpec("https://data.example.org/releases/v1/o.tar.gz", sha256=sha(data))
    mirror = http_server.url("mirror/pub/")
    out = download(spec, tmp_path, mirror=mirror, allowed_hosts=["data.example.org"], **FAST)
    assert out == tmp_path / "o.tar.gz" and out.read_bytes() == data
    assert http_server.count("/mirror/pub/o.tar.gz") == 1
    # the mirror host is allowed even though only data.example.org is listed
    out2 = download(spec, tmp_path / "again", mirror=mirror, allowed_hosts=[], **FAST)
    assert out2.read_bytes() == data


def test_present_file_is_not_downloaded_again(http_server, tmp_path, data):
    url = http_server.add("q.bin", data)
    (tmp_path / "q.bin").write_bytes(data)
    assert download(DownloadSpec(url, sha256=sha(data)), tmp_path, **FAST).read_bytes() == data
    assert download(DownloadSpec(url), tmp_path, **FAST).read_bytes() == data
    assert http_server.count() == 0


def test_present_file_with_wrong_sha_is_replaced(http_server, tmp_path, data):
    url = http_server.add("r.bin", data)
    (tmp_path / "r.bin").write_bytes(b"an older release")
    out = download(DownloadSpec(url, sha256=sha(data)), tmp_path, **FAST)
    assert out.read_bytes() == data
    assert (tmp_path / "r.bin.bad").read_bytes() == b"an older release"
    assert http_server.count("/r.bin") == 1


def test_spec_validation():
    with pytest.raises(ValueError, match="64 hex"):
        DownloadSpec("http://h/x", sha256="abc")
    with pytest.raises(ValueError, match="DownloadSpec.filename"):
        DownloadSpec("http://h/dir/").name
    with pytest.raises(ValueError, match="plain file name"):
        DownloadSpec("http://h/x", filename="../x").name
    assert DownloadSpec("http://h/a/b%20c.tar?x=1").name == "b c.tar"
    assert DownloadSpec("http://h/x", sha256="AB" * 32).sha256 == "ab" * 32
    with pytest.raises(DownloadError, match="only http"):
        download(DownloadSpec("ftp://h/x"), "/nonexistent-never-created", progress=False)


def test_resolve_url_and_host_matching():
    assert resolve_url("https://a.org/x/y/z.tgz", "http://m.local/base/") == "http://m.local/base/z.tgz"
    assert resolve_url("https://a.org/z.tgz", None) == "https://a.org/z.tgz"
    assert host_allowed("A.org", ["a.org"])
    assert not host_allowed("b.a.org", ["a.org"])
    assert host_allowed("b.a.org", ["*.a.org"]) and host_allowed("a.org", [".a.org"])
    assert not host_allowed("evila.org", [".a.org"])


def test_exceptions_pickle_round_trip():
    for e in (HttpError("m", status=404, url="u"), ChecksumMismatch("m", expected="a", actual="b"),
              HostNotAllowed("m", host="h", allowed=["x"]), DownloadError("m")):
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is type(e) and str(e2) == "m" and e2.__dict__ == e.__dict__
