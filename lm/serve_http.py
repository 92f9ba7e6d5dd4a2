"""``matalu lm serve``: the WebSocket endpoint and the talk page over :class:`lm.serve.Engine` (aiohttp).

Routes: ``GET /`` the talk page (lm/talk.html), ``GET /stats`` JSON (live sessions, engine timings, RSS),
``GET /ws`` the conversation WebSocket. Binds 127.0.0.1 unless told otherwise.

Message format, version 1 (JSON text messages have a ``type``; binary messages start with a kind byte)::

    client -> server
      {"type": "hello", "version": 1, "sample_rate": 16000, "channels": 1, "format": "pcm16" | "f32", "seed": 0}
                                 first message; sample_rate must be the codec's (16000), channels 1
      0x01 + samples             audio, little-endian int16 (pcm16) or float32 (f32), any number of samples >= 1
      {"type": "end"}            the utterance is over: the reply is completed (to the input's length), then `done`
    server -> client
      {"type": "ready", "version": 1, "session", "sample_rate", "channels": 1, "format", "frame_samples",
       "frame_rate", "max_delay", "algorithmic_latency_ms", "text": bool}
      0x01 + uint32 step + samples   one frame of the system's audio (the client's format), produced by the step
                                 that took the client's frame number `step` (its frame `step - max_delay`)
      {"type": "text", "step", "token", "piece"}   the system's text token of that frame (models with a text stream;
                                 padding tokens are not sent; piece is null without a tokenizer)
      {"type": "stats", "sessions", "steps", "rtf", "ms_per_step": {"encode", "temporal", "depth", "decode"}}
                                 about once a second: the engine's compute per batched step since the last stats, and
                                 its realtime factor (compute time / audio time; below 1 keeps up)
      {"type": "done", "samples", "frames"}   after `end`: the whole reply was sent; then close 1000
      {"type": "error", "code", "message"}    then close with the code's close code:
          busy 1013          every --max-sessions conversation is taken (sent at once, before the hello)
          bad_handshake 4001 the first message is not a valid hello (wrong version, rate, channels or format)
          bad_frame 4002     an unknown message, a binary message without the 0x01 kind byte, a payload that is not
                             whole samples, non-finite samples, audio after `end`
          slow_reader 4003   the client fell more than --send-queue messages behind: the server closes it rather than
                             drop audio or buffer without bound
          internal 1011      the engine failed
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from lm.serve import Busy, Engine, Output, Session

VERSION = 1
AUDIO = 0x01
FORMATS = {"pcm16": np.dtype("<i2"), "f32": np.dtype("<f4")}
CLOSE = {"busy": 1013, "bad_handshake": 4001, "bad_frame": 4002, "slow_reader": 4003, "internal": 1011}


class ProtocolError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_hello(data: Any, sample_rate: int) -> dict:
    """The client's hello -> ``{"format", "seed"}``; :class:`ProtocolError` ``bad_handshake`` saying what to fix."""
    try:
        hello = json.loads(data) if isinstance(data, str) else None
    except ValueError:
        hello = None
    if not isinstance(hello, dict) or hello.get("type") != "hello":
        raise ProtocolError("bad_handshake", 'the first message must be a JSON hello: {"type": "hello", "version": 1, '
                                             f'"sample_rate": {sample_rate}, "channels": 1, "format": "pcm16"}}')
    if hello.get("version") != VERSION:
        raise ProtocolError("bad_handshake", f"protocol version {hello.get('version')!r} is not served; use version {VERSION}")
    if hello.get("sample_rate") != sample_rate:
        raise ProtocolError("bad_handshake", f"sample_rate {hello.get('sample_rate')!r} is not served; resample the "
                                             f"microphone to {sample_rate} Hz")
    if hello.get("channels") != 1:
        raise ProtocolError("bad_handshake", f"channels {hello.get('channels')!r} is not served; send mono (1 channel)")
    fmt = hello.get("format", "pcm16")
    if fmt not in FORMATS:
        raise ProtocolError("bad_handshake", f"format {fmt!r} is not served; use one of {', '.join(FORMATS)}")
    seed = hello.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ProtocolError("bad_handshake", f"seed must be an integer; got {seed!r}")
    return {"format": fmt, "seed": seed}


def decode_audio(data: bytes, fmt: str) -> np.ndarray:
    """A client's binary message -> float32 samples; :class:`ProtocolError` ``bad_frame`` when malformed."""
    dt = FORMATS[fmt]
    if not data or data[0] != AUDIO:
        raise ProtocolError("bad_frame", "a binary message must start with the audio kind byte 0x01")
    body = data[1:]
    if not body or len(body) % dt.itemsize:
        raise ProtocolError("bad_frame", f"an audio message must hold whole {fmt} samples ({dt.itemsize} bytes each, "
                                         f"at least one); got {len(body)} bytes")
    x = np.frombuffer(body, dt)
    if fmt == "pcm16":
        return x.astype(np.float32) / 32768.0
    if not np.isfinite(x).all():
        raise ProtocolError("bad_frame", "the audio holds NaN or infinite samples")
    return x.astype(np.float32)


def encode_audio(step: int, audio: np.ndarray, fmt: str) -> bytes:
    if fmt == "pcm16":
        pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    else:
        pcm = audio.astype("<f4")
    return bytes([AUDIO]) + struct.pack("<I", step) + pcm.tobytes()


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8998
    send_queue: int = 100  # messages a client may fall behind before it is closed (slow_reader)
    socket_send_buffer: int = 65536  # bytes the kernel may hold for a client (Linux doubles it): bounded buffers
    hello_timeout_s: float = 10.0
    close_grace_s: float = 10.0  # a client closed by the server that has not read its error and close is cut off
    shutdown_timeout_s: float = 5.0


class TalkServer:
    def __init__(self, engine: Engine, tokenizer: Any = None, options: ServerOptions | None = None) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.opts = options or ServerOptions()
        self.page = resources.files("lm").joinpath("talk.html").read_bytes()
        self.app = web.Application()
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/stats", self._stats)
        self.app.router.add_get("/ws", self._ws)
        self.runner: web.AppRunner | None = None
        self.port = self.opts.port

    @property
    def url(self) -> str:
        return f"http://{self.opts.host}:{self.port}/"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=self.opts.shutdown_timeout_s)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.opts.host, self.opts.port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8")

    async def _stats(self, request: web.Request) -> web.Response:
        e = self.engine
        return web.json_response({"sessions": e.live, "max_sessions": e.cfg.max_sessions, "rss": rss_bytes(),
                                  **e.stats.snapshot()})

    def _ready(self, s: Session, fmt: str) -> dict:
        e, cfg = self.engine, self.engine.model.cfg
        return {"type": "ready", "version": VERSION, "session": s.id, "sample_rate": int(e.codec.sample_rate),
                "channels": 1, "format": fmt, "frame_samples": e.hop, "frame_rate": float(e.codec.frame_rate),
                "max_delay": cfg.max_delay, "algorithmic_latency_ms": 1000 * e.frame_s * (1 + cfg.max_delay),
                "text": cfg.has_text}

    def _text(self, o: Output) -> dict | None:
        if o.text is None or o.text < 0:
            return None
        tok = self.tokenizer
        if tok is not None and o.text in (tok.pad_id, tok.epad_id):
            return None
        piece = tok.sp.id_to_piece(o.text) if tok is not None else None
        return {"type": "text", "step": o.step, "token": o.text, "piece": piece}

    def _stats_msg(self, last: dict) -> dict:
        now = self.engine.stats.snapshot()
        steps = max(1, now["steps"] - last.get("steps", 0))
        ms = {k: round(1000 * (now[k] - last.get(k, 0.0)) / steps, 3) for k in ("encode", "temporal", "depth", "decode")}
        rtf = (now["busy"] - last.get("busy", 0.0)) / (steps * self.engine.frame_s)
        last.update(now)
        return {"type": "stats", "sessions": self.engine.live, "steps": now["steps"], "rtf": round(rtf, 4),
                "ms_per_step": ms}

    async def _fail(self, ws: web.WebSocketResponse, request: web.Request, code: str, message: str) -> None:
        await _fail(ws, code, message, request.transport, self.opts.close_grace_s)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        # bounded buffers all the way: the kernel's send buffer, the writer's (drained every 16 KiB), the queue
        sock = request.transport.get_extra_info("socket") if request.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.opts.socket_send_buffer)
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20, writer_limit=16384)
        await ws.prepare(request)
        e = self.engine
        if e.live >= e.cfg.max_sessions:
            await self._fail(ws, request, "busy", f"all {e.cfg.max_sessions} conversations are taken; try again later")
            return ws
        try:
            msg = await ws.receive(timeout=self.opts.hello_timeout_s)
            hello = parse_hello(msg.data if msg.type == WSMsgType.TEXT else None, int(e.codec.sample_rate))
        except asyncio.TimeoutError:
            await self._fail(ws, request, "bad_handshake", f"no hello within {self.opts.hello_timeout_s:g} s")
            return ws
        except ProtocolError as err:
            await self._fail(ws, request, err.code, str(err))
            return ws
        fmt = hello["format"]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.opts.send_queue)
        state: dict[str, Any] = {"failed": False, "last": {}, "since": 0}

        def slow(s: Session) -> None:
            state["failed"] = True
            e.close(s)
            sender.cancel()
            # held in `state`: the event loop keeps only a weak reference to a task, and a closing task collected
            # mid-way would leave the client neither closed nor cut off (seen once as a hung test)
            behind = (f"the client fell more than {self.opts.send_queue} messages behind; read the replies as they "
                      "come (or open a new conversation)")
            state["closing"] = asyncio.ensure_future(self._fail(ws, request, "slow_reader", behind))

        def deliver(s: Session, outs: list[Output], done: bool) -> None:  # on the event loop, from the engine thread
            items: list[Any] = []
            for o in outs:
                items.append(encode_audio(o.step, o.audio, fmt))
                t = self._text(o)
                if t is not None:
                    items.append(t)
                state["since"] += 1
                if state["since"] >= e.codec.frame_rate:
                    state["since"] = 0
                    items.append(self._stats_msg(state["last"]))
            if done and s.error:
                items += [{"type": "error", "code": "internal", "message": f"the engine failed: {s.error}"},
                          ("close", CLOSE["internal"])]
            elif done:
                items += [{"type": "done", "samples": s.received, "frames": s.emitted}, ("close", 1000)]
                state["done"] = True
            for it in items:
                if state["failed"]:
                    return
                try:
                    queue.put_nowait(it)
                except asyncio.QueueFull:
                    slow(s)

        try:
            session = e.open(hello["seed"], lambda s, o, d: loop.call_soon_threadsafe(deliver, s, o, d))
        except Busy as err:
            await self._fail(ws, request, "busy", str(err))
            return ws
        await ws.send_json(self._ready(session, fmt))
        sender = asyncio.ensure_future(_send_all(ws, queue))
        try:
            async for msg in ws:
                if state["failed"]:
                    break
                if msg.type == WSMsgType.BINARY:
                    if session.ending:
                        raise ProtocolError("bad_frame", "audio after `end` is not taken; open a new conversation")
                    e.feed(session, decode_audio(msg.data, fmt))
                elif msg.type == WSMsgType.TEXT:
                    try:
                        m = json.loads(msg.data)
                    except ValueError:
                        m = None
                    if not isinstance(m, dict) or m.get("type") != "end":
                        raise ProtocolError("bad_frame", 'a text message must be {"type": "end"} (after the hello)')
                    e.end(session)
                else:
                    break
        except ProtocolError as err:
            e.close(session)
            sender.cancel()
            await self._fail(ws, request, err.code, str(err))
            return ws
        finally:
            if not session.closed and not (session.ending and not ws.closed):
                e.close(session)  # the client left mid-utterance: its row is dropped
        if state.get("done"):  # the reply is complete: let the sender finish its close
            await asyncio.wait([sender], timeout=self.opts.hello_timeout_s)
        sender.cancel()  # the client left (or the close hung): nothing more will come for it
        with contextlib.suppress(BaseException):
            await sender
        if "closing" in state:  # a slow reader: its close (or cut-off, within 10 s) finishes before the handler
            with contextlib.suppress(BaseException):
                await state["closing"]
        return ws


async def _send_all(ws: web.WebSocketResponse, queue: asyncio.Queue) -> None:
    while True:
        item = await queue.get()
        if isinstance(item, tuple):  # ("close", code)
            await ws.close(code=item[1])
            return
        if isinstance(item, bytes):
            await ws.send_bytes(item)
        else:
            await ws.send_json(item)


async def _fail(ws: web.WebSocketResponse, code: str, message: str, transport: Any, grace_s: float) -> None:
    """Send the error, close with its code; a client that has not taken them within `grace_s` is cut off.

    Two things in aiohttp make this more than `send_json` + `close`. Its writers share one drain future, so the
    sender task, cancelled while it waited for a slow reader, cancels that future for every writer: the error's or
    the close's drain then raises CancelledError although the frame is already in the transport's buffer and this
    task was never cancelled (seen as a client that got neither an error nor a close in CI). And a close the client
    does not answer only starts a graceful close, which keeps the unsent bytes until the client reads them (never,
    for a client that never reads). So each frame goes out even when its drain is "cancelled", the transport is
    watched until its buffer is gone, and one still holding bytes after the grace period is aborted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    try:
        for frame in (lambda: ws.send_json({"type": "error", "code": code, "message": message}),
                      lambda: ws.close(code=CLOSE[code], message=message.encode()[:120])):
            try:
                await asyncio.wait_for(frame(), max(0.0, deadline - loop.time()))
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # this task was cancelled, not only the shared drain
                    raise
        while transport is not None and transport.get_write_buffer_size() and loop.time() < deadline:
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        if transport is not None:
            transport.abort()
        raise
    except Exception:  # the client went away, or did not take the frames in time
        pass
    if transport is not None and transport.get_write_buffer_size():
        transport.abort()


@contextlib.contextmanager
def running(engine: Engine, tokenizer: Any = None, options: ServerOptions | None = None) -> Iterator[TalkServer]:
    """The engine and its server on a background thread (tests, benchmarks); port 0 picks a free port."""
    server = TalkServer(engine, tokenizer, options or ServerOptions(port=0))
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    th = threading.Thread(target=main, name="matalu-serve-http", daemon=True)
    th.start()
    engine.start()
    try:
        if not started.wait(30):
            raise RuntimeError("the talk server did not start within 30 s")
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        engine.stop()


def serve_forever(engine: Engine, tokenizer: Any, options: ServerOptions) -> None:
    """Run until interrupted (the CLI)."""
    async def main() -> None:
        server = TalkServer(engine, tokenizer, options)
        await server.start()
        print(f"[lm] talk to it: {server.url} (WebSocket {server.url}ws, protocol v{VERSION}); "
              f"{engine.cfg.max_sessions} conversations at most; Ctrl-C stops", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    engine.start()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop()
