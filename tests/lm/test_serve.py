"""`matalu lm serve`: a Python WebSocket client streams audio through a tiny codec + LM and gets the reply of the
input's length; the stream equals `respond` on the same audio and seed; concurrent sessions are batched and give
exactly what each gives alone; busy, bad handshakes, malformed frames, a client that leaves mid-utterance and one
too slow to read each get their close code while the server keeps serving; memory stays flat over a soak."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
import urllib.request

import numpy as np
import pytest
from lm_helpers import save_tiny_codec, speechlike, tiny_lm

from lm import serve as lm_serve
from lm.respond import respond
from lm.serve import Busy, Engine, ServeConfig
from lm.serve_client import converse
from lm.serve_client import main as client_main
from lm.serve_http import ServerOptions, rss_bytes, running
from storage.audio import decode_audio, encode_wav

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    codec = save_tiny_codec(tmp_path_factory.mktemp("codec") / "run")
    return codec, tiny_lm(q=codec.num_codebooks, k=codec.codebook_size, text_vocab=40)


def stats(srv) -> dict:
    return json.loads(urllib.request.urlopen(srv.url + "stats", timeout=10).read())


def wait_sessions(srv, n: int, timeout: float = 20.0) -> dict:
    t0 = time.monotonic()
    while True:
        s = stats(srv)
        if s["sessions"] == n or time.monotonic() - t0 > timeout:
            return s
        time.sleep(0.05)


def test_a_stream_equals_respond_in_both_formats(pair, tmp_path):
    codec, lm = pair
    n = 11_683  # 0.73 s: not a whole number of 20 ms frames
    x = speechlike(n, seed=3)
    text: list[int] = []
    want = respond(x, codec, lm, seed=7, text_out=text)[0]
    xq = np.round(x * 32767) / 32768  # what the server hears from a pcm16 client
    want_q = respond(xq.astype(np.float32), codec, lm, seed=7)[0]
    with running(Engine(codec, lm, ServeConfig(max_sessions=2))) as srv:
        page = urllib.request.urlopen(srv.url, timeout=10).read().decode()
        c = asyncio.run(converse(srv.url, x, seed=7, chunk=500))
        p = asyncio.run(converse(srv.url, x, seed=7, fmt="pcm16", chunk=333))
        (tmp_path / "in.wav").write_bytes(encode_wav(x[None], 16000))  # a WAV file, as a user streams one
        assert client_main([srv.url, str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav"), "--seed", "7"]) == 0
        assert wait_sessions(srv, 0)["sessions"] == 0
    assert "getUserMedia" in page and "audioWorklet" in page
    d = lm.cfg.max_delay
    assert c.ready["frame_samples"] == 320 and c.ready["sample_rate"] == 16000 and c.ready["max_delay"] == d
    assert c.ready["algorithmic_latency_ms"] == pytest.approx(20 * (1 + d)) and c.ready["text"] is True
    assert c.error is None and c.close_code == 1000 and c.done == {"type": "done", "samples": n, "frames": 37}
    assert c.steps == list(range(d, d + 37))  # frame f comes from the step that took the user's frame f + d
    assert c.audio.dtype == np.float32 and c.audio.shape == (n,)
    np.testing.assert_array_equal(c.audio, want)  # the very samples respond gives
    assert [m["token"] for m in c.text] == text and all(m["piece"] is None for m in c.text)
    assert p.close_code == 1000 and p.audio.shape == (n,)
    np.testing.assert_allclose(p.audio, np.round(np.clip(want_q, -1, 1) * 32767) / 32768, atol=1e-6)
    out, sr = decode_audio((tmp_path / "out.wav").read_bytes())
    heard = decode_audio((tmp_path / "in.wav").read_bytes())[0][0]  # the WAV's 16-bit samples
    assert sr == 16000 and out.shape == (2, n)
    np.testing.assert_allclose(out[0], respond(heard, codec, lm, seed=7)[0], atol=1.01 / 32768)
    np.testing.assert_allclose(out[1], heard, atol=1.01 / 32768)


def test_concurrent_sessions_are_batched_and_equal_separate_runs(pair):
    codec, lm = pair
    xa, xb = speechlike(24_000, seed=1), speechlike(17_001, seed=2)
    want_a, want_b = respond(xa, codec, lm, seed=11)[0], respond(xb, codec, lm, seed=12)[0]
    engine = Engine(codec, lm, ServeConfig(max_sessions=2))

    async def three(url):
        a = asyncio.ensure_future(converse(url, xa, seed=11, chunk=320, realtime=True))
        await asyncio.sleep(0.25)  # b joins a quarter second later, in other chunk sizes
        b = asyncio.ensure_future(converse(url, xb, seed=12, chunk=777, realtime=True))
        await asyncio.sleep(0.3)
        busy = await converse(url, xb[:3200], seed=0)  # a third while both talk
        return await a, await b, busy

    with running(engine) as srv:
        a, b, busy = asyncio.run(three(srv.url))
        assert wait_sessions(srv, 0)["sessions"] == 0
    # the same tokens as alone (another token would change whole frames); frames decoded in one batch with the
    # other session's differ from a batch of one by float rounding only
    np.testing.assert_allclose(a.audio, want_a, atol=1e-5, rtol=0)
    np.testing.assert_allclose(b.audio, want_b, atol=1e-5, rtol=0)
    assert busy.error["code"] == "busy" and busy.close_code == 1013
    assert busy.error["message"] == "all 2 conversations are taken; try again later"
    # batching happened: fewer model steps than frames stepped (each input's frames + max_delay of silence)
    d = lm.cfg.max_delay
    assert engine.stats.frames == 75 + d + 54 + d and engine.stats.steps < engine.stats.frames
    assert a.stats and a.stats[-1]["rtf"] > 0 and set(a.stats[-1]["ms_per_step"]) == {"encode", "temporal", "depth",
                                                                                       "decode"}
    assert len(a.latency_ms) == 75 - lm.cfg.max_delay and min(a.latency_ms) > 0


def test_the_text_stream_comes_as_pieces_without_padding(pair, tmp_path):
    """With the run's tokenizer the server sends each text token with its SentencePiece piece, and leaves the
    padding tokens out: the tokens sent are respond's text tokens less pad/end-of-pad."""
    from lm.text import EPAD, PAD, TextTokenizer, train_tokenizer
    from tests.lm.tokens import write_token_shards

    codec, _ = pair
    write_token_shards(str(tmp_path / "tokens"), [6], Q=2, K=16)
    train_tokenizer(str(tmp_path / "tokens"), str(tmp_path / "spm"), vocab_size=60)
    tok = TextTokenizer.load(str(tmp_path / "spm"))
    lm = tiny_lm(q=codec.num_codebooks, k=codec.codebook_size, text_vocab=tok.vocab_size)
    x = speechlike(8000, seed=9)
    text: list[int] = []
    respond(x, codec, lm, seed=3, text_out=text)
    with running(Engine(codec, lm, ServeConfig(max_sessions=1)), tok) as srv:
        c = asyncio.run(converse(srv.url, x, seed=3))
    assert c.close_code == 1000
    assert [m["token"] for m in c.text] == [t for t in text if t not in (PAD, EPAD)]
    assert c.text and all(m["piece"] == tok.sp.id_to_piece(m["token"]) for m in c.text)


def test_a_failing_step_ends_its_batch_with_internal_and_the_server_goes_on(pair, monkeypatch, capsys):
    import lm.serve as serve_mod

    codec, lm = pair
    real, calls = serve_mod.step, []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*a, **kw)

    monkeypatch.setattr(serve_mod, "step", flaky)
    with running(Engine(codec, lm, ServeConfig(max_sessions=1))) as srv:
        bad = asyncio.run(converse(srv.url, speechlike(6400), seed=1))
        assert wait_sessions(srv, 0)["sessions"] == 0
        ok = asyncio.run(converse(srv.url, speechlike(3200), seed=1))
    assert bad.close_code == 1011 and bad.error == {
        "type": "error", "code": "internal", "message": "the engine failed: RuntimeError: CUDA out of memory (simulated)"}
    assert ok.close_code == 1000 and ok.audio.shape == (3200,)
    assert "CUDA out of memory (simulated)" in capsys.readouterr().err  # the traceback is in the server's log


def test_serve_cli_rejects_bad_settings_in_one_line(runs, capsys):
    from matalu.cli import main

    codec_run, lm_run = runs
    for flags, msg in ((["--max-sessions", "0"], "--max-sessions must be at least 1; got 0"),
                       (["--send-queue", "0"], "--send-queue must be at least 1; got 0")):
        assert main(["lm", "serve", "--codec", codec_run, "--lm", lm_run, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err


async def _raw(url: str, first, then=()) -> tuple[dict | None, int | None]:
    """Send ``first`` (a dict as JSON, or bytes), then ``then``; the server's error and close code."""
    import aiohttp

    err = None
    async with aiohttp.ClientSession() as s, s.ws_connect(url + "ws") as ws:
        for m in (first, *then):
            if isinstance(m, (bytes, bytearray)):
                await ws.send_bytes(bytes(m))
            elif isinstance(m, str):
                await ws.send_str(m)
            else:
                await ws.send_json(m)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "error":
                err = json.loads(msg.data)
        return err, ws.close_code


def test_bad_handshakes_and_malformed_frames_are_closed_with_codes(pair):
    codec, lm = pair
    hello = {"type": "hello", "version": 1, "sample_rate": 16000, "channels": 1, "format": "f32"}
    cases = [
        ({**hello, "sample_rate": 8000}, (), 4001, "sample_rate 8000 is not served; resample the microphone to 16000 Hz"),
        ({**hello, "channels": 2}, (), 4001, "channels 2 is not served; send mono (1 channel)"),
        ({**hello, "version": 2}, (), 4001, "protocol version 2 is not served; use version 1"),
        ({**hello, "format": "mp3"}, (), 4001, "format 'mp3' is not served; use one of pcm16, f32"),
        (b"\x01\x00\x00", (), 4001, "the first message must be a JSON hello"),
        (hello, (b"\x02\x00\x00\x00\x00",), 4002, "a binary message must start with the audio kind byte 0x01"),
        (hello, (b"\x01\x00\x00\x00",), 4002, "an audio message must hold whole f32 samples (4 bytes each, at least "
                                               "one); got 3 bytes"),
        (hello, (b"\x01" + np.array([0.1, np.nan], "<f4").tobytes(),), 4002, "the audio holds NaN or infinite samples"),
        (hello, ("hi",), 4002, 'a text message must be {"type": "end"} (after the hello)'),
        (hello, (b"\x01" + bytes(640), '{"type": "end"}', b"\x01" + bytes(640)), 4002,
         "audio after `end` is not taken; open a new conversation"),
    ]
    with running(Engine(codec, lm, ServeConfig(max_sessions=1))) as srv:
        for first, then, code, message in cases:
            err, close = asyncio.run(_raw(srv.url, first, then))
            assert close == code and err["message"].startswith(message), (first, then, err)
            assert err["code"] == {4001: "bad_handshake", 4002: "bad_frame"}[code]
        assert wait_sessions(srv, 0)["sessions"] == 0
        ok = asyncio.run(converse(srv.url, speechlike(3200), seed=1))  # still serving, the one row is free again
    assert ok.close_code == 1000 and ok.audio.shape == (3200,)


class RawClient:
    """A WebSocket client on a plain socket with a tiny receive buffer that does not read (a slow reader)."""

    def __init__(self, port: int) -> None:
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.s.settimeout(60)  # a server that neither closes nor cuts off fails the test instead of hanging it
        self.s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(1)
        assert self.buf.startswith(b"HTTP/1.1 101")
        self.buf = b""

    def send(self, payload: bytes, opcode: int) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        mask = os.urandom(4)
        body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.s.sendall(head + mask + body)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def hello(self) -> dict:
        """Send the hello and read the server's `ready`: the conversation is open (its row counted) from here."""
        self.send(json.dumps({"type": "hello", "version": 1, "sample_rate": 16000, "channels": 1,
                              "format": "f32"}).encode(), 1)
        op, payload = next(self.messages())
        assert op == 1 and json.loads(payload)["type"] == "ready", payload
        return json.loads(payload)

    def messages(self):
        """Read every frame until the close frame (answered): yields (opcode, payload)."""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            yield b0 & 0x0F, payload
            if b0 & 0x0F == 8:
                self.send(payload[:2], 8)  # answer the close, as a client should
                return


def test_a_client_leaving_and_a_slow_reader_free_their_rows(pair):
    codec, lm = pair
    opts = ServerOptions(port=0, send_queue=4, socket_send_buffer=4096)
    with running(Engine(codec, lm, ServeConfig(max_sessions=2)), options=opts) as srv:
        # 1. a client that goes away mid-utterance (no `end`, no close frame)
        raw = RawClient(srv.port)
        raw.hello()
        raw.send(b"\x01" + speechlike(8000).astype("<f4").tobytes(), 2)
        time.sleep(0.3)
        raw.s.close()
        assert wait_sessions(srv, 0)["sessions"] == 0
        # 2. a client that sends 5 s at once and never reads: closed with 4003 once 4 messages are waiting
        slow = RawClient(srv.port)
        slow.hello()  # open before the test waits for it to be closed
        x = speechlike(80_000, seed=4).astype("<f4")
        for i in range(0, x.size, 8000):
            slow.send(b"\x01" + x[i:i + 8000].tobytes(), 2)
        assert wait_sessions(srv, 0, timeout=60)["sessions"] == 0
        msgs = list(slow.messages())  # read within the close grace: it gets everything sent, the error and the close
        slow.s.close()
        other = asyncio.run(converse(srv.url, speechlike(4800, seed=5), seed=2))  # the server still serves
    assert other.close_code == 1000 and other.audio.shape == (4800,)
    errors = [json.loads(p) for op, p in msgs if op == 1 and b'"error"' in p]
    assert errors and errors[0]["code"] == "slow_reader" and "fell more than 4 messages behind" in errors[0]["message"]
    assert msgs[-1][0] == 8 and struct.unpack(">H", msgs[-1][1][:2])[0] == 4003
    assert sum(op == 2 for op, _ in msgs) < 250  # it was cut off, not served to the end


def test_a_joining_conversation_is_counted_while_its_row_is_built(pair, monkeypatch):
    """While the engine builds a new conversation's row it is neither joining nor a row yet; it must still count
    (`/stats`, the max-sessions check), or a client polling for 0 sessions sees a conversation that is open vanish,
    and one more client than --max-sessions gets in (seen as a test reading a slow client before it was closed)."""
    codec, lm = pair
    building, release = threading.Event(), threading.Event()
    init_rows = lm_serve.init_rows

    def slow_init(*args, **kwargs):
        building.set()
        release.wait(20)
        return init_rows(*args, **kwargs)

    monkeypatch.setattr(lm_serve, "init_rows", slow_init)
    engine = Engine(codec, lm, ServeConfig(max_sessions=1))
    engine.start()
    try:
        engine.open(0, lambda s, outs, done: None)
        assert building.wait(20)
        assert engine.live == 1
        with pytest.raises(Busy):
            engine.open(1, lambda s, outs, done: None)
    finally:
        release.set()
        engine.stop()


def test_a_slow_reader_that_never_reads_is_cut_off_after_the_close_grace(pair):
    """The server's close of a slow reader waits for the client to take its error and close frame, but not for
    ever: after `close_grace_s` the connection is cut, so a client that never reads holds no socket or buffer."""
    codec, lm = pair
    opts = ServerOptions(port=0, send_queue=2, socket_send_buffer=4096, close_grace_s=0.5)
    with running(Engine(codec, lm, ServeConfig(max_sessions=1)), options=opts) as srv:
        slow = RawClient(srv.port)
        slow.hello()  # open before the test waits for it to be closed
        x = speechlike(320_000, seed=7).astype("<f4")  # 20 s: far more reply than the socket buffers hold
        with contextlib.suppress(ConnectionError):  # cut off while still sending is the same outcome
            for i in range(0, x.size, 8000):
                slow.send(b"\x01" + x[i:i + 8000].tobytes(), 2)
        assert wait_sessions(srv, 0, timeout=60)["sessions"] == 0
        time.sleep(3)  # well past the grace
        got, ended = [], None
        try:
            for op, payload in slow.messages():
                got.append(op)
        except (ConnectionError, OSError) as err:  # cut off: what the kernel held, then EOF or a reset
            ended = err
        slow.s.close()
    assert ended is not None and not isinstance(ended, TimeoutError), ended
    assert 8 not in got  # the close frame never reached it: it was cut off, not closed


def test_memory_stays_flat_over_a_soak(pair):
    """Rounds of two concurrent conversations joining and leaving (streamed as fast as the engine goes): RSS after
    the last round is within a few MB of RSS after the first (a leak of rows, caches, sessions or queues would grow
    it). Short, for the default suite; the 5-minute soak: `python benchmarks/s2s.py --sessions '' --soak 300`."""
    codec, lm = pair
    x = speechlike(16000, seed=6)

    async def round_(url):
        return await asyncio.gather(converse(url, x, seed=1, chunk=1600), converse(url, x, seed=2, chunk=1600))

    rss = []
    with running(Engine(codec, lm, ServeConfig(max_sessions=2))) as srv:
        for _ in range(5):
            got = asyncio.run(round_(srv.url))
            assert all(g.close_code == 1000 and g.audio.shape == x.shape for g in got)
            assert wait_sessions(srv, 0)["sessions"] == 0
            rss.append(rss_bytes())
    growth = (rss[-1] - rss[0]) / 2**20
    assert growth < 8, f"RSS grew {growth:.1f} MB over 4 rounds of 2 x 1 s: {[r / 2**20 for r in rss]}"


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def runs(pair, tmp_path_factory):
    """The codec and LM as `matalu lm serve --codec/--lm` takes them: a codec checkpoint and an LM run folder."""
    from lm import checkpoint

    codec, lm = pair
    d = tmp_path_factory.mktemp("runs")
    save_tiny_codec(d / "codec")
    checkpoint.save(str(d / "lm"), 1, model=lm.state_dict(), optimizer=None, state={},
                    meta={"model": lm.cfg.to_dict(), "lineage": {"codec_id": codec.codec_id}})
    return str(d / "codec"), str(d / "lm")


class Cdp:
    """Chrome DevTools Protocol over the page's WebSocket: evaluate JS, take a screenshot."""

    def __init__(self, ws) -> None:
        self.ws, self.n = ws, 0

    async def call(self, method: str, **params):
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            m = await self.ws.receive_json()
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]

    async def js(self, expr: str):
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        return r["result"].get("value")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="/usr/bin/chromium is not installed (apt-get install chromium)")
def test_the_page_talks_in_headless_chromium_through_the_cli(runs, tmp_path):
    """`matalu lm serve` in its own process; the page in headless Chromium with a fake microphone playing a WAV:
    the reply's audio comes back, the latency readout fills, the recording is a stereo 16 kHz WAV that
    `matalu lm respond` takes. The screenshot stays in the test's tmp dir (page.png)."""
    import subprocess
    import sys

    import aiohttp

    from tests.conftest import free_port

    codec_run, lm_run = runs
    mic = tmp_path / "mic.wav"
    mic.write_bytes(encode_wav(speechlike(4 * 16000, seed=8)[None], 16000))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    server = subprocess.Popen([sys.executable, "-m", "matalu", "lm", "serve", "--codec", codec_run, "--lm", lm_run,
                               "--port", str(port), "--max-sessions", "1", "--threads", "1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = None
    try:
        line = server.stdout.readline()
        assert line.startswith(f"[lm] talk to it: http://127.0.0.1:{port}/"), line + server.stdout.read()
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'prof'}",
             "--remote-debugging-port=0", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={mic}", "--autoplay-policy=no-user-gesture-required",
             "--window-size=1000,800", f"http://127.0.0.1:{port}/#autostart"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        devtools = ""
        while "DevTools listening on" not in devtools:
            devtools = browser.stderr.readline()
            assert devtools, "chromium exited before its DevTools endpoint came up"
        cdp_port = int(devtools.split("ws://127.0.0.1:")[1].split("/")[0])

        async def drive():
            async with aiohttp.ClientSession() as s:
                pages = await (await s.get(f"http://127.0.0.1:{cdp_port}/json/list")).json()
                page = next(p for p in pages if p["type"] == "page")
                async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=1 << 26) as ws:
                    cdp = Cdp(ws)
                    t0 = time.monotonic()
                    while time.monotonic() - t0 < 60:
                        n = int(await cdp.js("Number(document.body.dataset.latencyN || 0)"))
                        if n >= 25 and await cdp.js("talk.stats !== null"):  # the server's first stats came
                            break
                        await asyncio.sleep(0.25)
                    status = await cdp.js("document.getElementById('status').textContent")
                    p50 = await cdp.js("document.getElementById('p50').textContent")
                    p95 = await cdp.js("document.getElementById('p95').textContent")
                    rtf = await cdp.js("document.getElementById('rtf').textContent")
                    frames = int(await cdp.js("talk.frames"))
                    shot = await cdp.call("Page.captureScreenshot", format="png")
                    wav = await cdp.js("(() => { const b = talk.wavBytes(); let s = ''; for (let i = 0; i < b.length;"
                                       " i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));"
                                       " return btoa(s); })()")
                    return n, status, p50, p95, rtf, frames, shot, wav

        n, status, p50, p95, rtf, frames, shot, wav = asyncio.run(drive())
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(10)
            browser.stderr.close()
        server.terminate()
        server.wait(10)
        server.stdout.close()
    png = tmp_path / "page.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    assert n >= 25, (status, n)
    assert status.startswith("talking (session 1, 50 frames/s"), status
    assert p50.endswith(" ms") and p95.endswith(" ms") and float(p50.split()[0]) <= float(p95.split()[0])
    assert "live)" in rtf and frames >= n
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rec = tmp_path / "conversation.wav"
    rec.write_bytes(base64.b64decode(wav))
    audio, sr = decode_audio(rec.read_bytes())
    assert sr == 16000 and audio.shape[0] == 2 and audio.shape[1] >= frames * 320
    assert float(np.abs(audio[1]).max()) > 0.01 and float(np.abs(audio[0]).max()) > 0  # you on 1, the system on 0
    from matalu.cli import main

    assert main(["lm", "respond", str(rec), "--codec", codec_run, "--lm", lm_run, "-o", str(tmp_path / "r.wav"),
                 "--device", "cpu"]) == 0
    assert decode_audio((tmp_path / "r.wav").read_bytes())[0].shape == audio.shape
