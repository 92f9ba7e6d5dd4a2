"""Cut recordings into samples: ``mono`` utterances from speech regions, ``dialog`` turn-pair windows.

Pure functions over time spans; the ingestion unit applies them to decoded audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from manifests.rows import Turn

SYSTEM, USER = "system", "user"


@dataclass
class SegmentConfig:
    mono: bool = True
    dialog: bool = True
    mono_max_gap_s: float = 1.0  # speech regions closer than this join one utterance
    dialog_min_s: float = 10.0
    dialog_max_s: float = 60.0
    dialog_pad_s: float = 0.25  # context kept before the first and after the last turn of a window
    fade_s: float = 0.01  # ramps where a mono mix is split into per-speaker channels

    def validate(self) -> None:
        if not (0 < self.dialog_min_s <= self.dialog_max_s <= 600):
            raise ValueError(
                f"dialog window bounds must satisfy 0 < min <= max <= 600 s (got {self.dialog_min_s}, {self.dialog_max_s})"
            )


def mono_spans(regions: list[tuple[float, float]], max_s: float, max_gap_s: float) -> list[tuple[float, float]]:
    """Join speech regions into utterances: a region joins the previous one when the pause between them is at
    most ``max_gap_s`` and the joined span stays within ``max_s``. A single region longer than ``max_s`` stays
    as it is (the duration filter rejects it with its reason)."""
    spans: list[list[float]] = []
    for s, e in regions:
        if spans and s - spans[-1][1] <= max_gap_s and e - spans[-1][0] <= max_s:
            spans[-1][1] = e
        else:
            spans.append([s, e])
    return [(s, e) for s, e in spans]


def turns_in(turns: list[Turn], start_s: float, end_s: float) -> list[Turn]:
    """Turns whose midpoint lies in [start, end), re-timed relative to ``start_s`` and clipped to the span."""
    out = []
    for t in turns:
        mid = 0.5 * (t.start_s + t.end_s)
        if start_s <= mid < end_s:
            out.append(
                Turn(
                    role=t.role,
                    speaker=t.speaker,
                    start_s=round(max(t.start_s, start_s) - start_s, 3),
                    end_s=round(min(t.end_s, end_s) - start_s, 3),
                    text=t.text,
                )
            )
    return out


def dialog_windows(
    turns: list[Turn], duration_s: float, cfg: SegmentConfig
) -> tuple[list[tuple[float, float]], list[tuple[float, float, str]]]:
    """Group consecutive turns into windows that start at a user turn and end after a system turn.

    Returns (windows, short) where ``short`` lists windows under ``dialog_min_s`` as (start, end, detail) so
    the caller can reject them with a reason.
    """
    turns = sorted(turns, key=lambda t: (t.start_s, t.end_s))
    windows: list[tuple[float, float]] = []
    short: list[tuple[float, float, str]] = []
    i = 0
    n = len(turns)
    while i < n:
        while i < n and turns[i].role != USER:
            i += 1
        if i >= n:
            break
        j = i
        last_system = -1
        while j < n and turns[j].end_s - turns[i].start_s <= cfg.dialog_max_s - 2 * cfg.dialog_pad_s:
            if turns[j].role == SYSTEM:
                last_system = j
            j += 1
        if last_system < 0:
            # no system answer fits after this user turn: move on
            i += 1
            continue
        s = max(0.0, turns[i].start_s - cfg.dialog_pad_s)
        e = min(duration_s, turns[last_system].end_s + cfg.dialog_pad_s)
        if i > 0:
            s = max(s, min(turns[i].start_s, turns[i - 1].end_s))
        if last_system + 1 < n:
            e = min(e, max(turns[last_system].end_s, turns[last_system + 1].start_s))
        if e - s < cfg.dialog_min_s:
            short.append((s, e, f"{e - s:.2f} s of turns is under the {cfg.dialog_min_s:g} s window minimum"))
        else:
            windows.append((round(s, 3), round(e, 3)))
        i = last_system + 1
    return windows, short


def _ramp_mask(n: int, spans: list[tuple[float, float]], sr: int, fade_s: float) -> np.ndarray:
    m = np.zeros(n, dtype=np.float32)
    f = max(1, int(fade_s * sr))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, f, dtype=np.float32))
    for s, e in spans:
        a, b = max(0, int(s * sr)), min(n, int(e * sr))
        if b <= a:
            continue
        m[a:b] = 1.0
        k = min(f, (b - a) // 2)
        if k > 0:
            m[a : a + k] = np.minimum(m[a : a + k], ramp[:k])
            m[b - k : b] = np.minimum(m[b - k : b], ramp[:k][::-1])
    return m


def role_channels(channel_roles: list[str], channels: int) -> tuple[int, int] | None:
    """The recording's channels that a dialog window's channels 0 (system) and 1 (user) are, when it keeps each role
    on its own channel; None when the window's channels are split from the mono mix by turn times."""
    if SYSTEM in channel_roles and USER in channel_roles and len(channel_roles) == channels:
        return channel_roles.index(SYSTEM), channel_roles.index(USER)
    return None


def dialog_audio(
    audio: np.ndarray, channel_roles: list[str], turns: list[Turn], sr: int, fade_s: float
) -> np.ndarray:
    """Two channels for a window: channel 0 = system, channel 1 = user (moshi-finetune's convention).

    When the recording keeps each role on its own channel, those channels are used as they are. Otherwise the
    mono mix is split by turn times (overlaps kept on both channels), with short ramps at the cuts.
    ``turns`` are relative to the window, ``audio`` is the window's audio.
    """
    own = role_channels(channel_roles, audio.shape[0])
    if own is not None:
        return np.stack([audio[own[0]], audio[own[1]]])
    mix = audio.mean(axis=0) if audio.shape[0] > 1 else audio[0]
    n = len(mix)
    sys_m = _ramp_mask(n, [(t.start_s, t.end_s) for t in turns if t.role == SYSTEM], sr, fade_s)
    usr_m = _ramp_mask(n, [(t.start_s, t.end_s) for t in turns if t.role == USER], sr, fade_s)
    return np.stack([mix * sys_m, mix * usr_m]).astype(np.float32)
