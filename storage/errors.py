"""Storage failures as one sentence a user can act on.

* :class:`StorageError`: what the CLI prints as ``matalu <cmd>: error: <sentence>`` (an S3 bucket that does not
  exist, credentials S3 refuses, an endpoint that does not answer). The sentence names the bucket/endpoint and
  what to check, never a secret.
* A full disk: :func:`no_space_path` finds the path of an ``ENOSPC``/``EDQUOT`` error (an exception, its causes, or
  the ``"OSError: [Errno 28] …"`` text a failed unit's summary carries) and :func:`no_space_message` is the
  summary line ``no space left on <path>: N units committed, M not; free space and rerun``.
"""

from __future__ import annotations

import errno
import os
import re

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = re.compile(r"\[Errno (?:%s)\] [^:'\n]*(?:: '([^'\n]*)')?" % "|".join(str(e) for e in NO_SPACE))


class StorageError(RuntimeError):
    """A storage operation that failed for a reason the user can fix; ``str()`` is the whole sentence."""


def with_path(err: OSError, path: str | os.PathLike) -> OSError:
    """``err`` with its ``filename`` set to ``path`` when the OS did not say which file (a failed ``write()``)."""
    if getattr(err, "filename", None) is None and err.errno is not None:
        return OSError(err.errno, os.strerror(err.errno), str(path))
    return err


def no_space_path(err: BaseException | str | None) -> str | None:
    """The path named by a no-space-left error in ``err`` (or ``""`` when it names none), else None.

    ``err`` may be an exception (its ``__cause__``/``__context__`` chain is searched) or error text such as a
    failed unit's ``"OSError: [Errno 28] No space left on device: '/data/out/x.tar'"``."""
    if err is None:
        return None
    if isinstance(err, str):
        m = _NO_SPACE_TEXT.search(err)
        return None if m is None else (m.group(1) or "")
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in NO_SPACE:
            return str(e.filename) if e.filename is not None else ""
        e = e.__cause__ or e.__context__
    return None


def no_space_message(path: str, committed: int, not_committed: int) -> str:
    """The one line a job prints when units failed because a disk is full."""
    where = os.path.dirname(path) if path and not os.path.isdir(path) else path
    return (f"no space left on {where or 'the output disk'}: {committed} units committed, {not_committed} not; "
            "free space and rerun")


_AUTH_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired",
               "AuthorizationHeaderMalformed", "InvalidSecurity")
_CODE_IN_TEXT = re.compile(r"An error occurred \(([A-Za-z0-9]+)\)")


def s3_error(err: BaseException, uri: str, endpoint: str | None, action: str) -> StorageError | None:
    """A :class:`StorageError` sentence for a botocore/boto3 failure of ``action`` ("read", "write", …) on ``uri``,
    or None when ``err`` is not an S3 access problem. Names the bucket and endpoint; never a credential."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    bucket = uri[len("s3://"):].split("/", 1)[0] if uri.startswith("s3://") else uri
    where = f"the S3 endpoint {endpoint}" if endpoint else "AWS S3"
    endpoint_flag = "--s3-endpoint-url (or MATALU_S3_ENDPOINT_URL)"
    if isinstance(err, (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)):
        url = endpoint or getattr(err, "kwargs", {}).get("endpoint_url") or "AWS S3"
        return StorageError(f"cannot reach the S3 endpoint {url} (to {action} s3://{bucket}): check {endpoint_flag} "
                            "and that the server is running and reachable")
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return StorageError(f"no usable S3 credentials to {action} s3://{bucket} at {where}: set AWS_ACCESS_KEY_ID "
                            "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE")
    code, message = "", ""
    if isinstance(err, ClientError):
        e = err.response.get("Error", {})
        code, message = str(e.get("Code", "")), str(e.get("Message", ""))
    elif isinstance(err, S3UploadFailedError):
        m = _CODE_IN_TEXT.search(str(err))
        code = m.group(1) if m else ""
        inner = err.__context__
        if isinstance(inner, BaseException) and not isinstance(inner, S3UploadFailedError):
            found = s3_error(inner, uri, endpoint, action)
            if found is not None:
                return found
    else:
        return None
    if code == "NoSuchBucket":
        return StorageError(f"S3 bucket {bucket!r} does not exist at {where}: create it, or check the bucket in {uri} "
                            f"and {endpoint_flag}")
    if code in _AUTH_CODES:
        return StorageError(f"{where} refused the S3 credentials ({code}) for bucket {bucket!r}: check "
                            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for this endpoint")
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        return StorageError(f"access denied to {action} s3://{bucket} at {where}: check that these credentials may "
                            f"{action} that bucket (its policy, the key's permissions)")
    if code:
        detail = f"{code}: {message}" if message else code
        return StorageError(f"S3 refused to {action} {uri} at {where} ({detail})")
    return None
