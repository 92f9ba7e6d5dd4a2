"""Local paths and ``s3://bucket/key`` URIs behind one set of functions.

* Local writes are atomic: bytes go to a temporary file in the target directory, then ``os.replace``.
* S3 writes are single PUTs (or boto3 managed uploads for large files), which S3 makes visible atomically;
  a run is only *committed* when its manifests and ``_SUCCESS`` exist, and those are written last.
* S3 credentials come from the standard AWS chain (env, profile, instance role) and are never logged;
  ``endpoint_url`` points at S3-compatible stores (MinIO, moto, Ceph).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError, s3_error, with_path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StorageOptions:
    """How to reach object storage. Empty fields fall back to boto3's own configuration chain."""

    endpoint_url: str | None = None
    region: str | None = None

    def to_dict(self) -> dict:
        return {"endpoint_url": self.endpoint_url, "region": self.region}


# Multipart uploads (boto3 managed transfers): objects from this size on go up in parts of MULTIPART_CHUNK bytes, so an
# interrupted upload resends one part, not the object. S3 parts must be >= 5 MiB (except the last).
MULTIPART_THRESHOLD = int(os.environ.get("MATALU_S3_MULTIPART_THRESHOLD", 64 << 20))
MULTIPART_CHUNK = int(os.environ.get("MATALU_S3_MULTIPART_CHUNK", 16 << 20))


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
                          max_concurrency=4)


_options = StorageOptions(endpoint_url=os.environ.get("MATALU_S3_ENDPOINT_URL") or None)
_clients: dict[tuple, object] = {}
_lock = threading.Lock()


def configure(options: StorageOptions | dict | None) -> None:
    """Set process-wide storage options (each Ray worker calls this with the job's options)."""
    global _options
    if options is None:
        return
    if isinstance(options, dict):
        options = StorageOptions(**{k: v for k, v in options.items() if k in ("endpoint_url", "region")})
    _options = options


def current_options() -> StorageOptions:
    return _options


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def is_local(uri: str) -> bool:
    s = str(uri)
    return "://" not in s or s.startswith("file://")


def local_path(uri: str) -> Path:
    s = str(uri)
    if s.startswith("file://"):
        s = s[len("file://") :]
    if "://" in s:
        raise ValueError(f"not a local path: {uri}")
    return Path(s)


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/', for local paths and s3 alike."""
    out = str(base).rstrip("/")
    for p in parts:
        p = str(p).strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def _split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r} (expected s3://bucket/key)")
    return bucket, key


def _s3():
    opts = _options
    key = (opts.endpoint_url, opts.region, os.getpid())
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session()
            client = session.client(
                "s3",
                endpoint_url=opts.endpoint_url,
                region_name=opts.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                # retried with backoff: throttling (503 SlowDown), 5xx, connection resets/timeouts (tests/faultproxy.py)
                config=Config(retries={"max_attempts": int(os.environ.get("MATALU_S3_MAX_ATTEMPTS", "8")),
                                       "mode": "adaptive"}),
            )
            _clients[key] = client
    return client


@contextmanager
def _s3_errors(uri: str, action: str):
    """S3 failures a user can fix (no bucket, bad keys, endpoint down) become one :class:`StorageError` sentence."""
    try:
        yield
    except (FileNotFoundError, StorageError):
        raise
    except Exception as e:
        err = s3_error(e, uri, _options.endpoint_url, action)
        if err is None:
            raise
        raise err from e


def _is_missing(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    return str(code) in ("404", "NoSuchKey", "NotFound")


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        from botocore.exceptions import ClientError

        with _s3_errors(uri, "read"):
            try:
                _s3().head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as e:
                if _is_missing(e):
                    return False
                raise
    return local_path(uri).exists()


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        from botocore.exceptions import ClientError

        with _s3_errors(uri, "read"):
            try:
                return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as e:
                if _is_missing(e):
                    raise FileNotFoundError(uri) from e
                raise
    if str(uri).startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(str(uri), timeout=60) as r:  # noqa: S310 - user-supplied recording URL
            return r.read()
    return local_path(uri).read_bytes()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def _atomic_local_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError) and (named := with_path(e, path)) is not e:
            raise named from e
        raise


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_bytes(uri: str, data: bytes) -> None:
    """Write all of ``data`` to ``uri`` atomically: readers see the old object or the new one, never a part."""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        with _s3_errors(uri, "write"):
            if len(data) >= MULTIPART_THRESHOLD:  # large checkpoints and manifests: in parts
                import io

                _s3().upload_fileobj(io.BytesIO(data), bucket, key, Config=_transfer_config())
                return
            _s3().put_object(Bucket=bucket, Key=key, Body=data)
        return
    _atomic_local_write(local_path(uri), data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def put_file(local: str | Path, uri: str) -> None:
    """Move/copy a finished local file to ``uri`` atomically (rename locally; upload on S3)."""
    local = Path(local)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        with _s3_errors(uri, "write"):
            _s3().upload_file(str(local), bucket, key, Config=_transfer_config())
        return
    dst = local_path(uri)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(local, dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    # another filesystem: copy to a temp name beside the target, then rename; the temp file never outlives an error
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(local, "rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, dst)
    except BaseException as e:
        _unlink(tmp)
        if isinstance(e, OSError) and (named := with_path(e, dst)) is not e:
            raise named from e
        raise


def remove(uri: str) -> None:
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        with _s3_errors(uri, "delete"):
            _s3().delete_object(Bucket=bucket, Key=key)
        return
    try:
        local_path(uri).unlink()
    except FileNotFoundError:
        pass


def remove_empty_dirs(prefix: str) -> None:
    """Remove the empty folders under a local ``prefix`` (deepest first); S3 has no folders to remove."""
    if is_s3(prefix):
        return
    root = local_path(prefix)
    if not root.exists():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def list_files(prefix: str, suffix: str = "") -> list[str]:
    """All files under ``prefix`` (recursively) whose names end with ``suffix``, sorted.

    Hidden temp files (``.name.tmp``) are never listed."""
    if is_s3(prefix):
        bucket, key = _split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        with _s3_errors(prefix, "list"):
            for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
                for obj in page.get("Contents", []):
                    k = obj["Key"]
                    name = k.rsplit("/", 1)[-1]
                    if k.endswith(suffix) and not name.startswith("."):
                        out.append(f"s3://{bucket}/{k}")
        return sorted(out)
    root = local_path(prefix)
    if not root.exists():
        return []
    return sorted(
        str(p)
        for p in root.rglob(f"*{suffix}")
        if p.is_file() and not p.name.startswith(".")
    )


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()



def read_range(uri: str, start: int, length: int) -> bytes:
    """``length`` bytes of ``uri`` from byte ``start``: one ranged GET on ``s3://`` (``Range: bytes=a-b``), a seek
    and a read on a local file. Reading past the end is an error (the caller's offsets do not fit the object)."""
    start, length = int(start), int(length)
    if start < 0 or length < 0:
        raise ValueError(f"read_range({uri!r}, {start}, {length}): start and length must be >= 0")
    if length == 0:
        return b""
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        from botocore.exceptions import ClientError

        with _s3_errors(uri, "read"):
            try:
                data = _s3().get_object(Bucket=bucket, Key=key,
                                        Range=f"bytes={start}-{start + length - 1}")["Body"].read()
            except ClientError as e:
                if _is_missing(e):
                    raise FileNotFoundError(uri) from e
                if str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) in ("InvalidRange", "416"):
                    data = b""
                else:
                    raise
    else:
        with open(local_path(uri), "rb") as f:
            f.seek(start)
            data = f.read(length)
    if len(data) != length:
        raise ValueError(f"{uri} holds {len(data)} of the {length} bytes asked for at offset {start}: the object is "
                         "shorter than the manifest says (rewritten or truncated); re-run the job that wrote it")
    return data
