"""A local HTTP file server for download tests: Range support plus switchable faults.

Use the ``http_server`` fixture (import it into a test module with
``from tests.httpserver import http_server  # noqa: F401``)::

    def test_x(http_server):
        url = http_server.add("a.bin", b"...")        # serve bytes at /a.bin
        http_server.drop_after(1000, times=2)         # first 2 GETs of any file die after 1000 body bytes
        http_server.fail("/a.bin", 500, times=2)      # then two 500s for /a.bin
        http_server.ignore_range = True               # answer Range requests with the whole file (200)
        ...
        assert http_server.count("/a.bin") == 3
        assert http_server.ranges("/a.bin") == [None, "bytes=1000-"]

Binds 127.0.0.1 on a free port; never talks to anything else.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class RequestRecord:
    method: str
    path: str
    range: str | None
    status: int
    headers: dict[str, str]


class FileServer:
    """Serves files under ``root`` over HTTP/1.1 with keep-alive, Range (206/416) and injected faults."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[RequestRecord] = []
        self.ignore_range = False
        self._fail: dict[str, list] = {}  # path -> [status, remaining times or None for always]
        self._drop: list = [None, 0]  # [after_bytes, remaining times]
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="test-http",
                                        daemon=True)

    # -- setup ------------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str = "") -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    def add(self, name: str, data: bytes) -> str:
        """Serve ``data`` at ``/name``; return its URL."""
        p = self.root / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return self.url(name)

    def fail(self, path: str, status: int, times: int | None = None) -> None:
        """Answer ``status`` for ``path`` (``times`` requests, or always when None)."""
        with self._lock:
            self._fail["/" + path.lstrip("/")] = [status, times]

    def drop_after(self, n_bytes: int, times: int = 1) -> None:
        """Cut the connection after ``n_bytes`` of body, for the next ``times`` file responses (any path)."""
        with self._lock:
            self._drop = [n_bytes, times]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._fail.clear()
            self._drop = [None, 0]
            self.ignore_range = False

    # -- inspection -------------------------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        with self._lock:
            if path is None:
                return len(self.requests)
            path = "/" + path.lstrip("/")
            return sum(1 for r in self.requests if r.path == path)

    def ranges(self, path: str) -> list[str | None]:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r.range for r in self.requests if r.path == path]

    def statuses(self, path: str) -> list[int]:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r.status for r in self.requests if r.path == path]

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> "FileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FileServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------------------------

    def _take_fail(self, path: str) -> int | None:
        """The status to fail this request with, if any (consumes one use)."""
        with self._lock:
            f = self._fail.get(path)
            if f is None or (f[1] is not None and f[1] <= 0):
                return None
            if f[1] is not None:
                f[1] -= 1
            return f[0]

    def _take_drop(self) -> int | None:
        with self._lock:
            n, times = self._drop
            if n is not None and times > 0:
                self._drop[1] -= 1
                return n
            return None

    def _record(self, handler: BaseHTTPRequestHandler, path: str, status: int) -> None:
        with self._lock:
            self.requests.append(RequestRecord(handler.command, path, handler.headers.get("Range"), status,
                                               dict(handler.headers.items())))

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _send_empty(self, status: int, path: str, extra: dict | None = None) -> None:
                server._record(self, path, status)
                self.send_response(status)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                self._serve_inner(path, body)

            def _serve_inner(self, path: str, body: bool) -> None:
                status = server._take_fail(path)
                if status is not None:
                    self._send_empty(status, path)
                    return
                file = (server.root / path.lstrip("/")).resolve()
                if server.root.resolve() not in file.parents or not file.is_file():
                    self._send_empty(404, path)
                    return
                data = file.read_bytes()
                size = len(data)
                start, end, status = 0, size - 1, 200
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    m = _RANGE_RE.match(rng.strip())
                    if m and (m.group(1) or m.group(2)):
                        if m.group(1):
                            start = int(m.group(1))
                            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                        else:  # suffix range: last N bytes
                            start = max(0, size - int(m.group(2)))
                        if start >= size or start > end:
                            self._send_empty(416, path, {"Content-Range": f"bytes */{size}"})
                            return
                        status = 206
                payload = data[start:end + 1]
                server._record(self, path, status)
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                if not body:
                    return
                drop = server._take_drop()
                if drop is not None and drop < len(payload):
                    self.wfile.write(payload[:drop])
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def http_server(tmp_path):
    """A running :class:`FileServer` serving ``tmp_path/"srv"``; stopped after the test."""
    with FileServer(tmp_path / "srv") as server:
        yield server
