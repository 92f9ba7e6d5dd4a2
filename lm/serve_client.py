"""A Python client of ``matalu lm serve`` (protocol v1, lm/serve_http.py): stream 16 kHz mono audio, collect the
reply, the text stream, the server's stats and the end-to-end latency of every frame (client frame sent -> the
reply of the step that took it received). Used by the tests and benchmarks/s2s.py."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from lm.serve_http import AUDIO, FORMATS, VERSION


@dataclass
class Conversation:
    ready: dict | None = None
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # the system's reply, in order
    steps: list[int] = field(default_factory=list)  # the step of every audio frame received
    text: list[dict] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)  # one per reply frame of a frame the client sent
    done: dict | None = None
    error: dict | None = None
    close_code: int | None = None


def encode_audio_message(x: np.ndarray, fmt: str) -> bytes:
    if fmt == "pcm16":
        return bytes([AUDIO]) + np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    return bytes([AUDIO]) + np.asarray(x, "<f4").tobytes()


async def converse(url: str, audio: np.ndarray, *, seed: int = 0, fmt: str = "f32", chunk: int = 320,
                   realtime: bool = False, end: bool = True, hello: dict | None = None,
                   session: aiohttp.ClientSession | None = None) -> Conversation:
    """Stream ``audio`` (float32, 16 kHz mono) to the server at ``url`` (http://host:port/) in messages of
    ``chunk`` samples, paced at real time when ``realtime``; then ``{"type": "end"}`` (when ``end``) and read until
    the server closes. ``hello`` overrides fields of the handshake (tests of bad handshakes)."""
    own = session is None
    session = session or aiohttp.ClientSession()
    conv = Conversation()
    parts: list[np.ndarray] = []
    sent_at: dict[int, float] = {}
    try:
        async with session.ws_connect(url.rstrip("/") + "/ws", max_msg_size=1 << 22) as ws:
            await ws.send_json({"type": "hello", "version": VERSION, "sample_rate": 16000, "channels": 1,
                                "format": fmt, "seed": seed, **(hello or {})})

            async def send() -> None:
                while conv.ready is None and not ws.closed and conv.error is None:
                    await asyncio.sleep(0.001)
                if conv.ready is None:
                    return
                hop = int(conv.ready["frame_samples"])
                t0, sent = time.perf_counter(), 0
                for i in range(0, len(audio), chunk):
                    if ws.closed:
                        return
                    x = audio[i:i + chunk]
                    if realtime:
                        await asyncio.sleep(max(0.0, t0 + i / 16000 - time.perf_counter()))
                    await ws.send_bytes(encode_audio_message(x, fmt))
                    now = time.perf_counter()
                    for t in range(sent // hop, (sent + len(x)) // hop):
                        sent_at[t] = now
                    sent += len(x)
                if end and not ws.closed:
                    await ws.send_json({"type": "end"})

            sender = asyncio.ensure_future(send())
            dt = FORMATS[fmt]
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    step = struct.unpack("<I", msg.data[1:5])[0]
                    y = np.frombuffer(msg.data[5:], dt)
                    parts.append(y.astype(np.float32) / 32768.0 if fmt == "pcm16" else y.astype(np.float32))
                    conv.steps.append(step)
                    if step in sent_at:
                        conv.latency_ms.append(1000 * (time.perf_counter() - sent_at.pop(step)))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    m = json.loads(msg.data)
                    kind = m.get("type")
                    if kind == "ready":
                        conv.ready = m
                    elif kind == "text":
                        conv.text.append(m)
                    elif kind == "stats":
                        conv.stats.append(m)
                    elif kind == "done":
                        conv.done = m
                    elif kind == "error":
                        conv.error = m
                else:
                    break
            conv.close_code = ws.close_code
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                pass
    finally:
        if own:
            await session.close()
    if parts:
        conv.audio = np.concatenate(parts)
    return conv


def main(argv: list[str] | None = None) -> int:
    """``python -m lm.serve_client URL IN.wav -o OUT.wav [--seed N] [--realtime]``: stream a WAV to a running
    ``matalu lm serve`` and write the conversation as stereo (channel 0 the system, channel 1 the input), 16 kHz."""
    import argparse

    import storage
    from storage.audio import decode_audio, encode_wav, resample

    ap = argparse.ArgumentParser(prog="python -m lm.serve_client", description=main.__doc__.split("\n")[0])
    ap.add_argument("url", help="the server, e.g. http://127.0.0.1:8998/")
    ap.add_argument("input", metavar="IN.wav")
    ap.add_argument("-o", "--out", required=True, metavar="OUT.wav")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--realtime", action="store_true", help="pace the audio at real time (as a microphone would)")
    args = ap.parse_args(argv)
    audio, sr = decode_audio(storage.read_bytes(args.input))
    x = resample(audio.mean(axis=0, keepdims=True), sr, 16000)[0].astype(np.float32)
    conv = asyncio.run(converse(args.url, x, seed=args.seed, realtime=args.realtime))
    if conv.error or conv.close_code != 1000:
        print(f"the server closed the conversation ({conv.close_code}): {conv.error}")
        return 1
    storage.write_bytes(args.out, encode_wav(np.stack([conv.audio, x]), 16000))
    lat = sorted(conv.latency_ms)
    p50 = f", latency p50 {lat[len(lat) // 2]:.0f} ms" if lat else ""
    print(f"wrote {args.out}: {x.size / 16000:.2f} s stereo (0 = system, 1 = input){p50}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
