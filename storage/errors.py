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
