"""Diarization -> dialog turns with roles (docs/DESIGN.md §7: speaker turns -> (user, system) exchanges).

1. **Speaker turns.** Segments are sorted by start; a segment joins the previous turn when it has the same
   speaker and starts at most ``merge_gap_s`` after that turn ends (a pause inside one turn).
2. **Exchanges.** Consecutive turns are linked when the next one starts at most ``max_response_gap_s`` after
   the previous one ends (overlaps count as 0 s); a link between two different speakers is an *exchange* (one
   speaker answers the other). A maximal run of linked turns is kept when it holds at least one exchange; runs
   with none (one speaker alone, nobody answering within the gap) are dropped.
3. **Roles.** One speaker is ``system`` (channel 0 of a dialog sample), every other speaker is ``user``
   (channel 1). ``system="more"`` (default): the speaker who talks most in the kept turns; ``"less"``: the one
   who talks least; ``"first"`` / ``"second"``: the first / second speaker to talk; any other string: that
   speaker label itself.

The result is a list of :class:`manifests.rows.Turn` sorted by start, ready for
:func:`pipelines.stages.segment.dialog_windows` / :func:`~pipelines.stages.segment.dialog_audio`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from manifests.rows import Turn
from pipelines.stages.segment import SYSTEM, USER


def _as_tuple(s: Any) -> tuple[float, float, str]:
    if isinstance(s, dict):
        return float(s["start_s"]), float(s["end_s"]), str(s["speaker"])
    if hasattr(s, "start_s"):
        return float(s.start_s), float(s.end_s), str(s.speaker)
    a, b, k = s
    return float(a), float(b), str(k)


def speaker_turns(segments: Iterable[Any], merge_gap_s: float = 0.5) -> list[tuple[float, float, str]]:
    """Join consecutive same-speaker segments separated by at most ``merge_gap_s``."""
    segs = sorted((_as_tuple(s) for s in segments), key=lambda s: (s[0], s[1], s[2]))
    turns: list[list] = []
    for a, b, k in segs:
        if b <= a:
            continue
        if turns and turns[-1][2] == k and a - turns[-1][1] <= merge_gap_s:
            turns[-1][1] = max(turns[-1][1], b)
        else:
            turns.append([a, b, k])
    return [(a, b, k) for a, b, k in turns]


def exchange_runs(turns: list[tuple[float, float, str]], max_response_gap_s: float = 2.0) -> list[list[int]]:
    """Indices of the maximal runs of linked turns that contain at least one exchange."""
    runs: list[list[int]] = []
    cur: list[int] = []
    reach = float("-inf")  # latest end seen in the current run (an overlapped turn may end after its successor)
    for i, (a, b, _) in enumerate(turns):
        if cur and a - reach <= max_response_gap_s:
            cur.append(i)
        else:
            if cur:
                runs.append(cur)
            cur = [i]
            reach = float("-inf")
        reach = max(reach, b)
    if cur:
        runs.append(cur)

    def has_exchange(run: list[int]) -> bool:
        return any(turns[i][2] != turns[j][2] for i, j in itertools.pairwise(run))

    return [r for r in runs if has_exchange(r)]


def choose_system(turns: list[tuple[float, float, str]], system: str = "more") -> str:
    talk: dict[str, float] = {}
    order: list[str] = []
    for a, b, k in turns:
        talk[k] = talk.get(k, 0.0) + (b - a)
        if k not in order:
            order.append(k)
    if not order:
        return ""
    if system == "more":
        return max(order, key=lambda k: (talk[k], -order.index(k)))
    if system == "less":
        return min(order, key=lambda k: (talk[k], order.index(k)))
    if system == "first":
        return order[0]
    if system == "second":
        return order[1] if len(order) > 1 else order[0]
    if system in talk:
        return system
    raise ValueError(f"system={system!r}: use 'more', 'less', 'first', 'second' or one of the speakers {order}")


def diarization_to_turns(segments: Iterable[Any], *, merge_gap_s: float = 0.5, max_response_gap_s: float = 2.0,
                         system: str = "more") -> list[Turn]:
    """Diarization segments (``(start_s, end_s, speaker)`` tuples, ``{"start_s", "end_s", "speaker"}`` dicts or
    objects with those attributes) -> role-labelled :class:`Turn` list for dialog windows."""
    if merge_gap_s < 0 or max_response_gap_s < 0:
        raise ValueError("merge_gap_s and max_response_gap_s must be >= 0")
    turns = speaker_turns(segments, merge_gap_s)
    kept = [turns[i] for run in exchange_runs(turns, max_response_gap_s) for i in run]
    sys_spk = choose_system(kept, system)
    return [Turn(role=SYSTEM if k == sys_spk else USER, speaker=k, start_s=round(a, 3), end_s=round(b, 3))
            for a, b, k in kept]
