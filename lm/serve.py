"""The batched conversation engine behind ``matalu lm serve``: many live conversations, one LM step per frame.

Each conversation (:class:`Session`) has its own streaming codec encoder and decoder state and one row of a
shared :class:`lm.generate.StreamState` made by :func:`lm.generate.init_rows` (its own positions, caches and
``torch.Generator`` seeded with the session's seed). :meth:`Engine.tick` runs, on one thread (the codec's states
are batched too when they can be: our codec's, :func:`codec.model.cat_states`; other codecs run per session):

1. joins and leaves: a new conversation's row is appended (:func:`lm.generate.cat_rows`), a finished one's dropped
   (:func:`lm.generate.select_rows`);
2. **encode**: every session's new samples go through the streaming encoder one hop at a time (as
   :func:`lm.respond.respond` does; the sessions that have a hop in one call), giving user frames;
3. **LM**: one :func:`lm.generate.step` for the whole batch; rows without a user frame yet are inactive (they do not
   advance or sample), so a session that sends late does not hold the others back;
4. **decode**: every system frame that came out goes through its session's streaming decoder, and the session's
   ``on_output`` callback gets ``Output(step, audio, text)``.

A session ends with :meth:`Engine.end`: its last partial frame is flushed, ``max_delay`` frames of the codec's
silence follow (as respond does), and the reply is cut to the input's length; the whole reply then equals
``respond`` on the same audio and seed: the same tokens, and the same samples (to float rounding, ~1e-7, when
frames of several sessions were decoded in one batch) (tests/lm/test_serve.py). Timing per stage is kept in
:class:`EngineStats`.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from codec.base import frame_hop, num_frames
from codec.model import CodecModel, cat_states, split_states
from lm.generate import StreamState, cat_rows, init_rows, select_rows, step
from lm.model import AudioLM
from lm.respond import check_pair, silence_frame

STAGES = ("encode", "temporal", "depth", "decode")


class Busy(Exception):
    """Every one of ``max_sessions`` rows is taken."""


@dataclass
class ServeConfig:
    max_sessions: int = 4
    temperature: float = 0.8
    top_k: int = 250
    text_temperature: float = 0.7
    text_top_k: int = 25

    def validate(self) -> None:
        if self.max_sessions < 1:
            raise ValueError(f"--max-sessions must be at least 1; got {self.max_sessions}")


@dataclass
class Output:
    step: int  # the user frame whose step produced this (system frame step - max_delay)
    audio: np.ndarray  # float32 [<= hop]: the system's frame (the last one cut to the input's length)
    text: int | None  # the system's text token of this frame (models with a text stream)


@dataclass
class Session:
    id: int
    seed: int
    on_output: Callable[["Session", list[Output], bool], None]  # (session, outputs, finished)
    inbox: collections.deque = field(default_factory=collections.deque)  # float32 arrays from the client
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # < hop samples not yet encoded
    frames: collections.deque = field(default_factory=collections.deque)  # user codes [1, Q] to step
    received: int = 0  # samples the client sent
    stepped: int = 0  # user frames stepped (= the row's position)
    emitted: int = 0  # system frames sent out
    ending: bool = False  # the client said the utterance is over
    flushed: bool = False
    closed: bool = False
    error: str | None = None  # the engine failed on this conversation's step (finished with it)
    enc: Any = None
    dec: Any = None


@dataclass
class EngineStats:
    steps: int = 0  # model steps (ticks that stepped at least one row)
    frames: int = 0  # user frames stepped, all sessions together
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    busy: float = 0.0  # wall seconds inside ticks that stepped

    def snapshot(self) -> dict:
        return {"steps": self.steps, "frames": self.frames, "busy": self.busy, **self.seconds}


class Engine:
    def __init__(self, codec: Any, model: AudioLM, cfg: ServeConfig | None = None) -> None:
        check_pair(codec, model)
        self.cfg = cfg or ServeConfig()
        self.cfg.validate()
        self.codec, self.model = codec, model.eval()
        hop = frame_hop(codec)
        if hop.denominator != 1 or not callable(getattr(codec, "encode_step", None)):
            raise ValueError(f"codec {codec.codec_id} has no streaming encoder/decoder with a whole-sample hop: "
                             "the server needs a StreamingCodec (a matalu codec checkpoint)")
        self.hop = int(hop)
        self.frame_s = self.hop / int(codec.sample_rate)
        self._batch_codec = isinstance(codec, CodecModel)  # its streaming states batch across sessions
        self.silence = silence_frame(codec, hop)  # [1, Q] on the codec's device, as encode_step's codes
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sessions: list[Session] = []  # rows of self._state, in order
        self._joining: list[Session] = []
        self._state: StreamState | None = None
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- called from any thread -------------------------------------------------------------------------------
    @property
    def live(self) -> int:
        with self._lock:
            return sum(not s.closed for s in self._sessions + self._joining)

    def open(self, seed: int, on_output: Callable[[Session, list[Output], bool], None]) -> Session:
        with self._lock:
            if sum(not s.closed for s in self._sessions + self._joining) >= self.cfg.max_sessions:
                raise Busy(f"all {self.cfg.max_sessions} conversations are taken; try again later")
            self._next_id += 1
            s = Session(self._next_id, int(seed), on_output)
            self._joining.append(s)
        return s

    def feed(self, session: Session, audio: np.ndarray) -> None:
        if session.ending or session.closed:
            raise ValueError("this conversation has ended; audio after `end` is not taken")
        session.received += int(audio.size)
        session.inbox.append(np.asarray(audio, np.float32).reshape(-1))
        self._wake.set()

    def end(self, session: Session) -> None:
        session.ending = True
        self._wake.set()

    def close(self, session: Session) -> None:
        session.closed = True
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="matalu-serve-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            try:
                stepped = self.tick()
            except Exception as err:  # noqa: BLE001 - the engine must outlive one bad step
                traceback.print_exc()
                self._fail_all(f"{type(err).__name__}: {err}")
                stepped = False
            if not stepped:
                self._wake.wait(0.05)
                self._wake.clear()

    def _fail_all(self, message: str) -> None:
        """End every conversation of the batch with ``message`` (their rows are gone); new ones start afresh."""
        with self._lock:
            sessions, self._sessions, self._state = self._sessions, [], None
            for s in sessions:
                s.error, s.closed = message, True
        for s in sessions:
            with contextlib.suppress(Exception):
                s.on_output(s, [], True)

    # -- the engine thread ------------------------------------------------------------------------------------
    def _rows(self) -> None:
        with self._lock:
            keep = [i for i, s in enumerate(self._sessions) if not s.closed]
            if len(keep) < len(self._sessions):
                self._state = select_rows(self._state, keep) if keep else None
                self._sessions = [self._sessions[i] for i in keep]
            self._joining = [s for s in self._joining if not s.closed]
            joining = list(self._joining)
        if joining:
            new = init_rows(self.model, [s.seed for s in joining])
            self._state = new if self._state is None else cat_rows(self._state, new)
            for s in joining:
                s.enc, s.dec = self.codec.init_encode_state(1), self.codec.init_decode_state(1)
            with self._lock:  # a joining session stays counted until it is a row (`live` never dips to 0 between)
                self._sessions += joining
                self._joining = [s for s in self._joining if s not in joining]

    def _encode(self) -> None:
        """Every whole hop every session has, through the streaming encoder: one call per round for all sessions
        with a hop (our codec's states batch: codec.model.cat_states), else one per session; then the flushes."""
        for s in self._sessions:
            if s.inbox:
                chunks = [s.pending]
                while s.inbox:
                    chunks.append(s.inbox.popleft())
                s.pending = np.concatenate(chunks)
        while True:
            ready = [s for s in self._sessions if s.pending.size >= self.hop]
            if not ready:
                break
            x = torch.from_numpy(np.stack([s.pending[: self.hop] for s in ready]))[:, None]
            if self._batch_codec and len(ready) > 1:
                codes, st = self.codec.encode_step(x, cat_states([s.enc for s in ready]))
                for s, enc in zip(ready, split_states(st, [s.enc for s in ready])):
                    s.enc = enc
            else:
                parts = []
                for i, s in enumerate(ready):
                    c, s.enc = self.codec.encode_step(x[i:i + 1], s.enc)
                    parts.append(c)
                codes = torch.cat(parts)
            for i, s in enumerate(ready):
                s.frames.extend(codes[i:i + 1, :, j] for j in range(codes.shape[-1]))
                s.pending = s.pending[self.hop:]
        for s in self._sessions:
            if s.ending and not s.flushed and not s.inbox:
                codes, s.enc = self.codec.encode_step(torch.from_numpy(s.pending).view(1, 1, -1), s.enc, final=True)
                s.frames.extend(codes[:, :, j] for j in range(codes.shape[-1]))
                s.frames.extend(self.silence for _ in range(self.model.cfg.max_delay))
                s.pending = np.zeros(0, np.float32)
                s.flushed = True

    def _decode(self, rows: list[tuple[Session, torch.Tensor]]) -> list[np.ndarray]:
        """One system frame per (session, codes [1, Q]) through the sessions' streaming decoders (batched when the
        codec's states batch)."""
        codes = torch.cat([c for _, c in rows])[..., None]
        if self._batch_codec and len(rows) > 1:
            y, st = self.codec.decode_step(codes, cat_states([s.dec for s, _ in rows]))
            for (s, _), dec in zip(rows, split_states(st, [s.dec for s, _ in rows])):
                s.dec = dec
        else:
            ys = []
            for i, (s, _) in enumerate(rows):
                yi, s.dec = self.codec.decode_step(codes[i:i + 1], s.dec)
                ys.append(yi)
            y = torch.cat(ys)
        y = y.reshape(len(rows), -1).float().cpu().numpy()
        return list(y)

    def tick(self) -> bool:
        """One round: joins/leaves, encode, one batched LM step, decode. False when no session had a frame."""
        self._rows()
        if not self._sessions:
            return False
        t0 = time.perf_counter()
        secs = self.stats.seconds
        self._encode()
        t1 = time.perf_counter()
        secs["encode"] += t1 - t0
        active = [bool(s.frames) for s in self._sessions]
        if not any(active):
            for s in self._sessions:
                self._finish_if_done(s, [])
            return False
        user = torch.cat([s.frames.popleft() if a else self.silence for s, a in zip(self._sessions, active)])
        cfg, dev = self.cfg, self.model.device
        codes, text = step(self.model, self._state, user.to(dev), active=torch.tensor(active, device=dev),
                           temperature=cfg.temperature, top_k=cfg.top_k, text_temperature=cfg.text_temperature,
                           text_top_k=cfg.text_top_k, timings=secs)
        t2 = time.perf_counter()
        codes_cpu = codes.cpu()
        text_cpu = None if text is None else text.cpu()
        out: list[tuple[int, Session, torch.Tensor]] = []  # (row, session, codes) of the frames to decode
        for i, (s, a) in enumerate(zip(self._sessions, active)):
            if not a:
                continue
            s.stepped += 1
            limit = num_frames(s.received, self.hop) if s.flushed else None
            if int(codes_cpu[i, 0]) >= 0 and (limit is None or s.emitted < limit):
                out.append((i, s, codes_cpu[i:i + 1]))
        audio = self._decode([(s, c) for _, s, c in out]) if out else []
        outs: dict[int, list[Output]] = {}
        for (i, s, _), y in zip(out, audio):
            if s.flushed and s.emitted == num_frames(s.received, self.hop) - 1:
                y = y[: s.received - s.emitted * self.hop]
            s.emitted += 1
            outs[s.id] = [Output(s.stepped - 1, y, None if text_cpu is None else int(text_cpu[i]))]
        for s, a in zip(self._sessions, active):
            if a:
                self._finish_if_done(s, outs.get(s.id, []))
        secs["decode"] += time.perf_counter() - t2
        self.stats.steps += 1
        self.stats.frames += sum(active)
        self.stats.busy += time.perf_counter() - t0
        return True

    def _finish_if_done(self, s: Session, outs: list[Output]) -> None:
        done = s.flushed and not s.frames and s.emitted >= num_frames(s.received, self.hop)
        if outs or done:
            try:
                s.on_output(s, outs, done)
            except Exception:  # noqa: BLE001 - its client is gone (the server stopped): drop the row
                done = True
        if done:
            s.closed = True
