"""Turn-taking measures of one two-party conversation from speech regions (seconds), exact interval arithmetic.

The user's speech ``user`` and the system's ``system`` are lists of ``(start_s, end_s)``; ``duration`` is the
conversation's length. Definitions (docs/DESIGN.md §9, "Conversation metrics"):

* **reply** to a user turn ``[s, e)``: the system's first speech onset ``r`` with ``s < r < next`` (``next`` the
  start of the next user turn, or the end). Speech the system began before the user started is not a reply.
  ``r >= e``: **gap** ``r - e``; ``r < e``: **overlap** ``e - r`` (the system came in before the user finished).
  No onset in the window: the turn got no reply.
* **reply length**: the system's speech seconds in ``[r, next)``.
* **system speech ratio** ``|S| / duration``; **silence ratio** ``(duration - |S ∪ U|) / duration`` (neither speaks);
  **babble ratio** ``|S ∩ U| / |S|`` (the share of the system's speech spoken while the user speaks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

Region = tuple[float, float]
PERCENTILES = (10, 25, 50, 75, 90)


def merge(regions: list[Region]) -> list[Region]:
    """Sorted, non-overlapping regions (touching or overlapping ones joined; empty ones dropped)."""
    out: list[list[float]] = []
    for s, e in sorted((float(s), float(e)) for s, e in regions if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def total(regions: list[Region]) -> float:
    return float(sum(e - s for s, e in merge(regions)))


def intersect(a: list[Region], b: list[Region]) -> list[Region]:
    a, b = merge(a), merge(b)
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def clip(regions: list[Region], start: float, end: float) -> list[Region]:
    return intersect(regions, [(start, end)]) if end > start else []


@dataclass
class Exchange:
    """One user turn and the system's reply to it (times in seconds from the conversation's start)."""

    user_start: float
    user_end: float
    window_end: float  # the next user turn's start, or the conversation's end
    onset: float | None  # the reply's first speech onset; None: no reply
    gap: float | None  # onset - user_end, when the reply starts after the turn
    overlap: float | None  # user_end - onset, when it starts inside the turn
    reply_s: float  # the system's speech seconds in [onset, window_end)

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def exchanges(user: list[Region], system: list[Region], duration: float) -> list[Exchange]:
    """One :class:`Exchange` per (merged) user turn."""
    user, system = merge(user), merge(system)
    out = []
    for i, (s, e) in enumerate(user):
        nxt = user[i + 1][0] if i + 1 < len(user) else max(float(duration), e)
        onset = next((r for r, _ in system if s < r < nxt), None)
        gap = overlap = None
        reply = 0.0
        if onset is not None:
            if onset >= e:
                gap = onset - e
            else:
                overlap = e - onset
            reply = total(clip(system, onset, nxt))
        out.append(Exchange(s, e, nxt, onset, gap, overlap, reply))
    return out


@dataclass
class Talk:
    """Speech time sums of one or more conversations (seconds); ratios come out of :meth:`ratios`."""

    duration: float = 0.0
    system: float = 0.0
    either: float = 0.0  # |S ∪ U|
    both: float = 0.0  # |S ∩ U|

    def add(self, user: list[Region], system: list[Region], duration: float) -> "Talk":
        u, s = clip(user, 0.0, duration), clip(system, 0.0, duration)
        self.duration += float(duration)
        self.system += total(s)
        self.either += total(u + s)
        self.both += total(intersect(u, s))
        return self

    def ratios(self) -> dict:
        d = self.duration
        return {"system_speech_ratio": _r(self.system / d) if d else None,
                "silence_ratio": _r((d - self.either) / d) if d else None,
                "babble_ratio": _r(self.both / self.system) if self.system else None}


def percentiles(values: list[float], qs: tuple[int, ...] = PERCENTILES) -> dict:
    """``{"n", "mean", "p10", …}`` of ``values`` (numpy's linear interpolation); ``{"n": 0}`` when empty."""
    if not values:
        return {"n": 0}
    v = np.asarray(values, np.float64)
    return {"n": len(values), "mean": _r(float(v.mean())), **{f"p{q}": _r(float(np.percentile(v, q))) for q in qs}}


def timing(ex: list[Exchange]) -> dict:
    """The gap, overlap and reply-length distributions and the share of user turns that got a reply."""
    return {"user_turns": len(ex), "replied": _r(sum(x.onset is not None for x in ex) / len(ex)) if ex else None,
            "gap_s": percentiles([x.gap for x in ex if x.gap is not None]),
            "overlap_s": percentiles([x.overlap for x in ex if x.overlap is not None]),
            "reply_s": percentiles([x.reply_s for x in ex if x.onset is not None])}


def _r(x: float) -> float:
    return round(float(x), 4)
