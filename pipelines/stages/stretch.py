"""A recording's speech as *stretches*: the union of its samples' time ranges (docs/DESIGN.md §7).

Mono samples and dialog windows are cut from the same audio (a dialog window holds its mono turns), so a measure
that depends only on a time range of the recording (the duplicate landmarks, the DNSMOS windows) is computed once
over each stretch of the recording's mono mix, and every sample takes its own range's part of it. Ranges that
overlap or touch make one stretch; a sample that overlaps no other is a stretch alone, measured exactly as on its
own audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """Where a sample's audio lies: samples ``[start, end)`` of the caller's mono mix number ``recording``."""

    recording: int
    start: int
    end: int


@dataclass
class Stretch:
    recording: int
    start: int
    end: int
    members: list[int] = field(default_factory=list)  # indices of the spans it covers


def stretches(spans: list[Span]) -> list[Stretch]:
    """The stretches covering ``spans`` (each span in exactly one), by recording then time."""
    out: list[Stretch] = []
    for i in sorted(range(len(spans)), key=lambda i: (spans[i].recording, spans[i].start, spans[i].end)):
        s = spans[i]
        if out and out[-1].recording == s.recording and s.start <= out[-1].end:
            out[-1].end = max(out[-1].end, s.end)
            out[-1].members.append(i)
        else:
            out.append(Stretch(s.recording, s.start, s.end, [i]))
    return out
