"""A fake OpenAI-compatible chat server on 127.0.0.1 for ``matalu texts generate`` tests.

``FakeLLM(answer)`` serves ``POST /v1/chat/completions``; ``answer(body) -> (status, content, finish_reason)`` decides
each reply from the request body (its ``seed`` says which request it is). Requests and their headers are recorded."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class FakeLLM:
    def __init__(self, answer: Callable[[dict], tuple[int, str, str]]) -> None:
        self.answer = answer
        self.requests: list[tuple[dict, dict]] = []  # (body, headers)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append((body, dict(self.headers.items())))
                if self.path != "/v1/chat/completions":
                    status, payload = 404, b'{"error": "not found"}'
                else:
                    status, content, finish = server.answer(body)
                    payload = json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model"),
                                          "choices": [{"index": 0, "finish_reason": finish,
                                                       "message": {"role": "assistant", "content": content}}]}
                                         ).encode() if status == 200 else b'{"error": "fake"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "FakeLLM":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
