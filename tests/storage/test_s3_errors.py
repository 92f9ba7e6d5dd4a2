"""S3 problems a user can fix (no bucket, keys the server refuses, endpoint down) are one line naming the bucket or
endpoint and what to check, never a secret (moto's server on 127.0.0.1; a closed local port)."""

from __future__ import annotations

import socket

import boto3
import pytest

import storage
from matalu.cli import main
from storage.errors import StorageError

SECRET = "s3cr3t-Never-Print-Me"


@pytest.fixture()
def keys(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMATALUTEST0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    old = storage.current_options()
    yield
    storage.configure(old)


def _closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def _ingest(tmp_path, out: str, endpoint: str, capsys) -> str:
    listing = tmp_path / "l.csv"
    listing.write_text("path,text\na.wav,x\n")
    capsys.readouterr()
    rc = main(["ingest", "--source", "manifest", "--manifest", str(listing), "--out", out, "--s3-endpoint-url",
               endpoint, "--sources-dir", str(tmp_path / "src"), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 2 and SECRET not in cap.err + cap.out
    err = cap.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("matalu ingest: error: "), err
    return err


def test_missing_bucket(s3_server, keys, tmp_path, capsys):
    err = _ingest(tmp_path, "s3://no-such-bucket/run", s3_server, capsys)
    assert f"S3 bucket 'no-such-bucket' does not exist at the S3 endpoint {s3_server}" in err
    storage.configure(storage.StorageOptions(endpoint_url=s3_server))
    for op in (lambda: storage.write_bytes("s3://no-such-bucket/k", b"x"), lambda: storage.read_bytes("s3://no-such-bucket/k")):
        with pytest.raises(StorageError, match="'no-such-bucket' does not exist"):
            op()


def test_keys_the_server_refuses(s3_server, keys, tmp_path, capsys, monkeypatch):
    import moto.settings

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="keyed")
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto now checks keys: ours are unknown
    err = _ingest(tmp_path, "s3://keyed/run", s3_server, capsys)
    assert f"the S3 endpoint {s3_server} refused the S3 credentials (InvalidAccessKeyId) for bucket 'keyed'" in err
    assert "AWS_SECRET_ACCESS_KEY" in err and "AKIAMATALUTEST0000" not in err


def test_endpoint_down(keys, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MATALU_S3_MAX_ATTEMPTS", "2")  # the sentence, not botocore's eight backed-off retries
    url = _closed_port()
    err = _ingest(tmp_path, "s3://bucket/run", url, capsys)
    assert f"cannot reach the S3 endpoint {url} (to list s3://bucket)" in err and "--s3-endpoint-url" in err
    storage.configure(storage.StorageOptions(endpoint_url=url))
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.put_file(tmp_path / "l.csv", "s3://bucket/l.csv")
