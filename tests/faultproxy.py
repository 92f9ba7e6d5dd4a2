"""A fault-injecting HTTP proxy on 127.0.0.1 in front of an S3 server (moto), for the S3 fault tests.

Each request is forwarded to the upstream server, except that a share of them (``rate``) is faulted:

* ``slowdown``: answered ``503 SlowDown`` (S3's throttling reply) without reaching the server;
* ``drop``: the connection is reset (TCP RST) before the request reaches the server;
* ``reset_after``: the request reaches the server (the write happens), then the connection is reset, so the
  client never sees the reply and must retry an operation that already took effect;
* ``delay``: forwarded after ``delay_s``.

Faults are deterministic by ``seed``: whether the n-th sighting of a request (method, path, query without the
upload id) is faulted, and how, depends only on the seed and that key, not on thread timing. They are bounded: one
request is faulted at most ``max_per_request`` times, so a client that retries always gets through.

The proxy counts what it saw: requests, faults by kind, and the body bytes of faulted uploads (``PUT`` of an
object or of a multipart part) -- the bytes the client had to send again."""

from __future__ import annotations

import hashlib
import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

KINDS = ("slowdown", "drop", "reset_after", "delay")
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


@dataclass
class Stats:
    requests: int = 0
    faults: dict = field(default_factory=lambda: {k: 0 for k in KINDS})
    reuploaded_bytes: int = 0  # body bytes of uploads that were faulted (sent again by the client)
    reuploaded_part_bytes: int = 0  # ... of those, multipart parts (UploadPart)
    reuploads: int = 0  # faulted uploads (each sent again)
    part_uploads: int = 0  # UploadPart requests that succeeded
    multipart_creates: int = 0
    writes: list = field(default_factory=list)  # (method, path) of writes the server answered, in order


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.2, seed: int = 0, kinds=KINDS, delay_s: float = 0.2,
                 max_per_request: int = 2) -> None:
        u = urlsplit(upstream)
        self.up_host, self.up_port = u.hostname, u.port
        self.rate, self.seed, self.kinds, self.delay_s, self.max_per = rate, seed, tuple(kinds), delay_s, max_per_request
        self.stats = Stats()
        self._seen: dict[str, int] = {}
        self._faulted: dict[str, int] = {}
        self._lock = threading.Lock()
        self.enabled = True
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:  # quiet
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- decisions ------------------------------------------------------------------------------------------
    def _decide(self, method: str, path: str) -> str | None:
        u = urlsplit(path)
        query = urlencode(sorted((k, v) for k, v in parse_qsl(u.query, keep_blank_values=True) if k != "uploadId"))
        key = f"{method} {u.path}?{query}"
        with self._lock:
            self.stats.requests += 1
            n = self._seen.get(key, 0)
            self._seen[key] = n + 1
            if not self.enabled or self._faulted.get(key, 0) >= self.max_per:
                return None
            h = hashlib.sha256(f"{self.seed}|{key}|{n}".encode()).digest()
            x = struct.unpack(">Q", h[:8])[0] / 2**64
            if x >= self.rate:
                return None
            kind = self.kinds[h[8] % len(self.kinds)]
            self._faulted[key] = self._faulted.get(key, 0) + 1
            self.stats.faults[kind] += 1
            return kind

    # -- one request ----------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        method, path = h.command, h.path
        is_upload = method == "PUT" and "x-amz-copy-source" not in {k.lower() for k in h.headers}
        is_part = is_upload and "partNumber=" in path
        kind = self._decide(method, path)
        if kind in ("drop", "reset_after", "slowdown") and is_upload:
            with self._lock:
                self.stats.reuploaded_bytes += len(body)
                self.stats.reuploads += 1
                if is_part:
                    self.stats.reuploaded_part_bytes += len(body)
        if kind == "slowdown":
            h.send_response(503, "Slow Down")
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(SLOWDOWN)))
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(SLOWDOWN)
            return
        if kind == "drop":
            _reset(h)
            return
        if kind == "delay":
            time.sleep(self.delay_s)
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("expect", "transfer-encoding", "connection", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(self.up_host, self.up_port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status < 300:
            with self._lock:
                if method in ("PUT", "POST", "DELETE"):
                    self.stats.writes.append((method, urlsplit(path).path))
                if is_part:
                    self.stats.part_uploads += 1
                if method == "POST" and "uploads" in dict(parse_qsl(urlsplit(path).query, keep_blank_values=True)):
                    self.stats.multipart_creates += 1
        if kind == "reset_after":
            _reset(h)
            return
        h.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:  # resets we caused ourselves
        pass


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += h.rfile.read(size)
            h.rfile.readline()
    n = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(n) if n else b""


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close the client's connection with a TCP RST (a 'connection reset by peer' on the client)."""
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    h.close_connection = True
    try:
        h.connection.close()
    except OSError:
        pass
