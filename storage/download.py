"""Resumable HTTP(S) downloads with retries, checksums, a host allow-list and a mirror override (docs/DESIGN.md §5).

* Bytes go to ``<dest>/<name>.part``. A rerun (or a retry after a dropped connection) resumes it with
  ``Range: bytes=N-``; a server that ignores Range (200 instead of 206) restarts it from byte 0, and a 416 on a
  complete part goes straight to verification.
* 404/403/410 (and other 4xx) fail at once; 5xx, 429, timeouts and dropped connections are retried with
  exponential backoff. The retry budget counts consecutive attempts that made no progress, so a long transfer
  over a flaky link keeps resuming as long as bytes keep arriving.
* When the transfer is complete the size and sha256 (when given) are checked. A file that fails is renamed to
  ``<name>.bad`` (never left where a reader would take it) and ``ChecksumMismatch`` says what to do; a file that
  passes is renamed atomically from ``.part`` to ``<name>``. A final file that is already there (and matches the
  pinned sha256, when one is pinned) is not fetched again.
* ``allowed_hosts`` names the hosts a spec's URL may point at; ``mirror`` replaces scheme, host and path prefix
  (the file is fetched from ``<mirror>/<basename>``) and is always allowed, since the user chose it. Redirects
  are followed: the allow-list guards what configs may name, the pinned sha256 guards what arrives.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import logging
import os
import posixpath
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlsplit

log = logging.getLogger("matalu.storage.download")

_HASH_CHUNK = 1 << 20
_MAX_BACKOFF_S = 60.0
_RETRY_STATUS = frozenset({408, 425, 429})  # plus every 5xx; any other 4xx fails at once
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------
# Public types


@dataclass
class DownloadSpec:
    """One file to fetch. ``filename`` defaults to the last segment of the URL path (percent-decoded)."""

    url: str
    sha256: str | None = None
    size: int | None = None
    filename: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None:
            sha = self.sha256.strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise ValueError(
                    f"DownloadSpec({self.url!r}): sha256 must be 64 hex digits, got {self.sha256!r}"
                )
            self.sha256 = sha
        if self.size is not None and self.size < 0:
            raise ValueError(f"DownloadSpec({self.url!r}): size must be >= 0, got {self.size}")

    @property
    def name(self) -> str:
        """The local file name: ``filename`` or the URL's basename. Always a single safe path component."""
        name = self.filename if self.filename is not None else unquote(_url_basename(self.url))
        if not name:
            raise ValueError(
                f"cannot derive a file name from {self.url!r} (the URL path ends in '/'); "
                "set DownloadSpec.filename"
            )
        if name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
            raise ValueError(
                f"unsafe download file name {name!r} for {self.url!r}: it must be a plain file name "
                "(no '/', '\\', '.' or '..'); set DownloadSpec.filename"
            )
        return name


class DownloadError(Exception):
    """A download failed. The message says why and what to do next."""

    def __reduce__(self):  # keep subclasses picklable (Ray ships exceptions between processes)
        return (_rebuild_exc, (type(self), self.args, self.__dict__))


class ChecksumMismatch(DownloadError):
    """The bytes that arrived are not the pinned ones (sha256 or size). The file was moved to ``bad_path``."""

    def __init__(self, message: str, *, kind: str = "sha256", expected: Any = None, actual: Any = None,
                 path: Path | None = None, bad_path: Path | None = None) -> None:
        super().__init__(message)
        self.kind, self.expected, self.actual = kind, expected, actual
        self.path, self.bad_path = path, bad_path


class HostNotAllowed(DownloadError):
    """The URL's host is not in the allow-list."""

    def __init__(self, message: str, *, host: str = "", allowed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.host, self.allowed = host, tuple(allowed)


class HttpError(DownloadError):
    """The server answered with an HTTP error status (after retries, for retryable ones)."""

    def __init__(self, message: str, *, status: int = 0, url: str = "") -> None:
        super().__init__(message)
        self.status, self.url = status, url


def _rebuild_exc(cls, args, state):
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


# ---------------------------------------------------------------------------------------------------------------
# URLs and hosts


def _url_basename(url: str) -> str:
    return posixpath.basename(urlsplit(url).path)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def resolve_url(url: str, mirror: str | None = None) -> str:
    """The URL actually fetched: ``url`` itself, or ``<mirror>/<basename of url's path>`` with a mirror."""
    if not mirror:
        return url
    base = _url_basename(url)
    if not base:
        raise ValueError(f"cannot use a mirror for {url!r}: its path has no file name")
    return mirror.rstrip("/") + "/" + base


def host_allowed(host: str, allowed_hosts: Sequence[str]) -> bool:
    """Exact host match (case-insensitive); an entry ``.example.org`` or ``*.example.org`` also admits subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        entry = entry.strip().lower().rstrip(".")
        if entry.startswith("*."):
            entry = entry[1:]
        if entry.startswith("."):
            if host == entry[1:] or host.endswith(entry):
                return True
        elif host == entry:
            return True
    return False


def _check_url(spec: DownloadSpec, allowed_hosts: Sequence[str] | None, mirror: str | None) -> str:
    """Validate scheme and host; return the URL to fetch."""
    fetch_url = resolve_url(spec.url, mirror)
    scheme = urlsplit(fetch_url).scheme.lower()
    if scheme not in ("http", "https"):
        what = "mirror" if mirror else "URL"
        raise DownloadError(f"{fetch_url!r}: only http:// and https:// downloads are supported (check the {what})")
    if not _host(fetch_url):
        raise DownloadError(f"{fetch_url!r} has no host name")
    if mirror is None and allowed_hosts is not None:
        host = _host(spec.url)
        if not host_allowed(host, allowed_hosts):
            listed = ", ".join(allowed_hosts) if allowed_hosts else "(none)"
            raise HostNotAllowed(
                f"refusing to download {spec.url!r}: host {host!r} is not in the allow-list ({listed}). "
                f"If this host is trusted, add it to allowed_hosts; to fetch the same file from a mirror you "
                f"trust, pass --mirror BASE_URL (the file is then fetched from BASE_URL/{_url_basename(spec.url)})",
                host=host, allowed=allowed_hosts,
            )
    return fetch_url


# ---------------------------------------------------------------------------------------------------------------
# Progress


def _make_progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True),
    )


# ---------------------------------------------------------------------------------------------------------------
# One download


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 written: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.status, self.retry_after, self.written = reason, status, retry_after, written


class _Hasher:
    """sha256 of the part file, kept up to date as bytes are appended; re-reads the file when out of step."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.n = 0

    def sync(self, part: Path, size: int) -> None:
        if self.n == size:
            return
        self._h, self.n = hashlib.sha256(), 0
        if size:
            with open(part, "rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    self._h.update(chunk)
                    self.n += len(chunk)

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.n += len(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes START-END/TOTAL`` or ``bytes */TOTAL`` -> (start, end, total); None for what is missing."""
    m = _CONTENT_RANGE_RE.match(value or "")
    if not m:
        return None, None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    end = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, end, total


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _verify_and_commit(spec: DownloadSpec, part: Path, final: Path, fetch_url: str, hasher: _Hasher) -> Path:
    """Check size and sha256 of a complete part file; rename it to ``final`` or to ``<name>.bad``."""
    size = _size_of(part)
    bad = final.with_name(final.name + ".bad")
    if spec.size is not None and size != spec.size:
        os.replace(part, bad)
        raise ChecksumMismatch(
            f"{final.name}: size mismatch: expected {spec.size} bytes, got {size} (from {fetch_url}). "
            f"The file was moved to {bad}. If the source published a new release, update the pinned size "
            f"and sha256 (e.g. --sha256 {final.name}=HEX); otherwise delete {bad} and retry, or use another "
            f"--mirror if this one serves a different file",
            kind="size", expected=spec.size, actual=size, path=final, bad_path=bad,
        )
    if spec.sha256 is not None:
        hasher.sync(part, size)
        actual = hasher.hexdigest()
        if actual != spec.sha256:
            os.replace(part, bad)
            raise ChecksumMismatch(
                f"{final.name}: sha256 mismatch: expected {spec.sha256}, got {actual} ({size} bytes from "
                f"{fetch_url}). The file was moved to {bad}. If the source published a new release on purpose, "
                f"pin it with --sha256 {final.name}={actual}; otherwise delete {bad} and retry (a proxy or "
                f"mirror may have served a corrupt or different file)",
                kind="sha256", expected=spec.sha256, actual=actual, path=final, bad_path=bad,
            )
    with open(part, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    return final


def _existing_ok(spec: DownloadSpec, final: Path) -> bool:
    """True when ``final`` is already there and matches what is pinned; a mismatching one is moved to ``.bad``."""
    if not final.is_file():
        return False
    reason = None
    if spec.size is not None and final.stat().st_size != spec.size:
        reason = f"size {final.stat().st_size} != pinned {spec.size}"
    elif spec.sha256 is not None:
        actual = _sha256_file(final)
        if actual != spec.sha256:
            reason = f"sha256 {actual} != pinned {spec.sha256}"
    if reason is None:
        return True
    bad = final.with_name(final.name + ".bad")
    log.warning("%s exists but %s; moving it to %s and downloading again", final, reason, bad)
    os.replace(final, bad)
    return False


def _download(spec: DownloadSpec, dest_dir: Path, *, allowed_hosts: Sequence[str] | None, mirror: str | None,
              retries: int, backoff_s: float, timeout_s: float, chunk_size: int, session: Any,
              progress: Any) -> Path:
    import requests

    fetch_url = _check_url(spec, allowed_hosts, mirror)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / spec.name
    if _existing_ok(spec, final):
        log.debug("%s already present; not downloading", final)
        return final
    part = final.with_name(final.name + ".part")
    hasher = _Hasher()
    task = progress.add_task(spec.name, total=spec.size) if progress is not None else None
    failures = 0  # consecutive attempts without progress
    try:
        while True:
            offset = _size_of(part)
            if spec.size is not None and offset > spec.size:
                log.warning("%s holds %d bytes, more than the pinned %d; starting over", part, offset, spec.size)
                part.unlink()
                offset = 0
            if spec.size is not None and offset == spec.size and offset > 0:
                return _verify_and_commit(spec, part, final, fetch_url, hasher)
            if task is not None:
                progress.update(task, completed=offset)
            try:
                outcome, written = _attempt(session, fetch_url, part, offset, hasher, spec, timeout_s,
                                            chunk_size, progress, task, requests)
            except _Retry as r:
                written = r.written
                failures = 0 if written > 0 else failures + 1
                if failures > retries:
                    msg = (f"giving up on {fetch_url} after {retries + 1} attempts without progress: {r.reason}. "
                           f"{_size_of(part)} bytes are kept in {part}; rerun to resume, or pass --mirror to "
                           "fetch from elsewhere")
                    if r.status is not None:
                        raise HttpError(msg, status=r.status, url=fetch_url) from r.__cause__
                    raise DownloadError(msg) from r.__cause__
                if failures:
                    delay = min(_MAX_BACKOFF_S, backoff_s * (2 ** (failures - 1)))
                    if r.retry_after is not None:
                        delay = max(delay, min(r.retry_after, _MAX_BACKOFF_S))
                    log.warning("%s: %s; retry %d/%d in %.1fs", fetch_url, r.reason, failures, retries, delay)
                    time.sleep(delay)
                else:
                    log.info("%s: %s after %d new bytes; resuming", fetch_url, r.reason, written)
                continue
            if outcome == "complete":
                return _verify_and_commit(spec, part, final, fetch_url, hasher)
            # outcome == "restart": the part file was dropped (stale or bigger than the remote file); go again
            failures += 1
            if failures > retries:
                raise DownloadError(
                    f"giving up on {fetch_url}: the server keeps rejecting resumption of {part}; delete it and retry"
                )
    finally:
        if task is not None:
            progress.remove_task(task)


def _attempt(session, url: str, part: Path, offset: int, hasher: _Hasher, spec: DownloadSpec, timeout_s: float,
             chunk_size: int, progress, task, requests) -> tuple[str, int]:
    """One GET. Returns ("complete" | "restart", bytes written); raises _Retry or a final DownloadError."""
    # Ask for the file as stored: Range offsets must be file offsets, not offsets into a compressed transfer.
    headers = {"Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout_s)
    except requests.exceptions.SSLError as e:
        raise DownloadError(f"TLS error talking to {url}: {e}. Check the system clock and CA certificates, "
                            "or use a --mirror with a valid certificate") from e
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError) as e:
        raise _Retry(f"connection failed ({type(e).__name__}: {e})") from e
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema, requests.exceptions.TooManyRedirects) as e:
        raise DownloadError(f"cannot fetch {url}: {e}") from e

    with resp:
        status = resp.status_code
        if status == 416 and offset > 0:
            _, _, total = _parse_content_range(resp.headers.get("Content-Range"))
            if total == offset or (total is None and (spec.sha256 or spec.size is not None)):
                return "complete", 0  # the part already holds every byte; verification decides
            log.warning("%s: server refused to resume at byte %d (remote size %s); starting over",
                        url, offset, total if total is not None else "unknown")
            part.unlink(missing_ok=True)
            return "restart", 0
        if status in _RETRY_STATUS or status >= 500:
            raise _Retry(f"HTTP {status} {resp.reason or ''}".strip(), status=status,
                         retry_after=_retry_after_s(resp.headers.get("Retry-After")))
        if 400 <= status < 500:
            hint = {
                404: "the file is not there: check the URL, or the --mirror layout (mirror/BASENAME)",
                410: "the file was removed upstream: look for a newer release or use a --mirror that keeps it",
                403: "access denied: the host may need credentials or block this client; try a --mirror",
                401: "authentication required: the host needs credentials; try a --mirror",
            }.get(status, "the request was rejected; check the URL")
            raise HttpError(f"HTTP {status} {resp.reason or ''} for {url}: {hint}".replace("  ", " "),
                            status=status, url=url)
        if status == 206:
            start, _, total = _parse_content_range(resp.headers.get("Content-Range"))
            if start is None or start > offset:
                log.warning("%s: unusable Content-Range %r for a resume at byte %d; starting over",
                            url, resp.headers.get("Content-Range"), offset)
                part.unlink(missing_ok=True)
                return "restart", 0
        elif status == 200:
            if offset > 0:
                log.info("%s: server ignored the Range request; downloading from byte 0", url)
            start, total = 0, None
        else:
            raise HttpError(f"unexpected HTTP {status} {resp.reason or ''} for {url}", status=status, url=url)

        length = resp.headers.get("Content-Length")
        expected_end = start + int(length) if length is not None and length.isdigit() else total
        if task is not None:
            progress.update(task, total=spec.size if spec.size is not None else expected_end, completed=start)

        written = 0
        mode = "r+b" if start > 0 else "wb"
        with open(part, mode) as f:
            if start > 0:
                f.seek(start)
                f.truncate()
            hasher.sync(part, start)  # no-op when it already covers exactly the first `start` bytes
            body = _iter_body(resp, chunk_size)
            while True:
                try:
                    chunk = next(body, None)
                except _BodyError as e:
                    f.flush()
                    raise _Retry(f"connection dropped mid-body ({e})", written=written) from e.__cause__
                if chunk is None:
                    break
                f.write(chunk)
                hasher.update(chunk)
                written += len(chunk)
                if task is not None:
                    progress.update(task, advance=len(chunk))
        got_end = start + written
        if expected_end is not None and got_end < expected_end:
            raise _Retry(f"short read: got {got_end} of {expected_end} bytes", written=written)
        return "complete", written


class _BodyError(Exception):
    """Internal: reading the response body failed (dropped connection, timeout, protocol error)."""


def _iter_body(resp, chunk_size: int) -> Iterator[bytes]:
    """The body exactly as served (no Content-Encoding decoding, like curl without --compressed), in pieces of at
    most ``chunk_size``. ``read1`` hands over whatever has arrived, so a connection that drops mid-read loses no
    bytes that reached us; network errors come out as ``_BodyError``."""
    import requests
    import urllib3

    raw = resp.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # not a urllib3 2.x response (a stand-in session): requests' own iterator
        chunks = resp.iter_content(chunk_size=chunk_size, decode_unicode=False)
        while True:
            try:
                chunk = next(chunks, None)
            except (requests.exceptions.RequestException, OSError) as e:
                raise _BodyError(type(e).__name__) from e
            if chunk is None:
                return
            if chunk:
                yield chunk
    while True:
        try:
            chunk = read1(chunk_size, decode_content=False)
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as e:
            raise _BodyError(type(e).__name__) from e
        if not chunk:
            return
        yield chunk


def download(spec: DownloadSpec, dest_dir: str | Path, *, allowed_hosts: Sequence[str] | None = None,
             mirror: str | None = None, retries: int = 5, backoff_s: float = 0.5, timeout_s: float = 60,
             chunk_size: int = 1 << 20, progress: bool = True, session=None) -> Path:
    """Fetch ``spec`` into ``dest_dir`` (resumable, retried, verified); return the final path.

    ``session`` is a ``requests.Session`` (or anything with its ``get``); one is made and closed when None."""
    import requests

    own_session = session is None
    if own_session:
        session = requests.Session()
    bar = _make_progress() if progress else None
    try:
        with bar or contextlib.nullcontext():
            return _download(spec, Path(dest_dir), allowed_hosts=allowed_hosts, mirror=mirror, retries=retries,
                             backoff_s=backoff_s, timeout_s=timeout_s, chunk_size=chunk_size, session=session,
                             progress=bar)
    finally:
        if own_session:
            session.close()
