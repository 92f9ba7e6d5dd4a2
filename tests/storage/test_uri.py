"""One storage API over local paths and S3 (moto's server over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import boto3

import storage


def test_local_atomic_write_and_listing(tmp_path):
    uri = str(tmp_path / "a" / "b.bin")
    storage.write_bytes(uri, b"x" * 10)
    storage.write_bytes(uri, b"y" * 3)
    assert storage.read_bytes(uri) == b"yyy"
    assert storage.list_files(str(tmp_path)) == [uri]
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.endswith(".tmp")]
    storage.remove(uri)
    assert not storage.exists(uri)


def test_s3_round_trip(s3_server, tmp_path):
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="roundtrip")
    old = storage.current_options()
    storage.configure(storage.StorageOptions(endpoint_url=s3_server))
    try:
        storage.write_text("s3://roundtrip/p/one.txt", "ఒకటి")
        src = tmp_path / "two.bin"
        src.write_bytes(b"\x00" * 2048)
        storage.put_file(src, "s3://roundtrip/p/q/two.bin")
        assert storage.exists("s3://roundtrip/p/one.txt") and not storage.exists("s3://roundtrip/p/none")
        assert storage.read_text("s3://roundtrip/p/one.txt") == "ఒకటి"
        assert storage.list_files("s3://roundtrip/p") == ["s3://roundtrip/p/one.txt", "s3://roundtrip/p/q/two.bin"]
        assert storage.list_files("s3://roundtrip/p", ".bin") == ["s3://roundtrip/p/q/two.bin"]
        storage.remove("s3://roundtrip/p/one.txt")
        assert not storage.exists("s3://roundtrip/p/one.txt")
    finally:
        storage.configure(old)
