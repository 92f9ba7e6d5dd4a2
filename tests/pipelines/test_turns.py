"""diarization_to_turns: speaker turns -> exchanges -> roles, on hand-made segments."""

from __future__ import annotations

import pytest

from manifests.rows import Turn
from pipelines.stages.turns import diarization_to_turns, speaker_turns


def spans(turns: list[Turn]) -> list[tuple]:
    return [(t.role, t.speaker, t.start_s, t.end_s) for t in turns]


def test_merge_exchange_and_roles():
    segs = [
        (0.0, 2.0, "A"), (2.3, 4.0, "A"),  # one turn: 0.3 s pause < merge_gap_s
        (4.5, 6.0, "B"),  # B answers 0.5 s later
        (6.2, 9.0, "A"),
        (20.0, 25.0, "B"),  # 11 s of silence before, nothing after: nobody answers -> dropped
    ]
    got = diarization_to_turns(segs)
    # A talks 4.0 + 2.8 = 6.8 s, B 1.5 s (B's dropped monologue does not count): A is the system
    assert spans(got) == [("system", "A", 0.0, 4.0), ("user", "B", 4.5, 6.0), ("system", "A", 6.2, 9.0)]
    assert all(isinstance(t, Turn) for t in got)
    # a smaller merge gap keeps the paused turn in two pieces
    assert len(diarization_to_turns(segs, merge_gap_s=0.2)) == 4
    # a longer response gap links B's late monologue to the dialog (and B now talks more: 6.5 s vs 6.8 s, still A)
    assert spans(diarization_to_turns(segs, max_response_gap_s=12.0))[-1] == ("user", "B", 20.0, 25.0)


def test_role_choices():
    segs = [(0.0, 1.0, "Q"), (1.5, 5.0, "R"), (5.5, 6.5, "Q"), (7.0, 12.0, "R")]
    def roles(**kw):
        return {t.speaker: t.role for t in diarization_to_turns(segs, **kw)}

    assert roles() == {"Q": "user", "R": "system"}  # R talks more
    assert roles(system="less") == {"Q": "system", "R": "user"}
    assert roles(system="first") == {"Q": "system", "R": "user"}
    assert roles(system="second") == {"Q": "user", "R": "system"}
    assert roles(system="Q") == {"Q": "system", "R": "user"}
    with pytest.raises(ValueError, match="use 'more', 'less'"):
        diarization_to_turns(segs, system="nobody")


def test_overlaps_gaps_and_input_forms():
    # B starts before A ends (overlap): still an exchange; dicts and objects are accepted
    segs = [{"start_s": 0.0, "end_s": 5.0, "speaker": "A"}, {"start_s": 4.6, "end_s": 6.0, "speaker": "B"}]
    assert spans(diarization_to_turns(segs)) == [("system", "A", 0.0, 5.0), ("user", "B", 4.6, 6.0)]
    objs = [Turn("", "A", 0.0, 5.0), Turn("", "B", 7.5, 9.0)]  # 2.5 s > max_response_gap_s: no exchange
    assert diarization_to_turns(objs) == []
    assert diarization_to_turns(objs, max_response_gap_s=3.0)[1].role == "user"
    # a backchannel inside a long turn: the long turn still links to what follows it
    segs = [(0.0, 10.0, "A"), (3.0, 3.5, "B"), (11.0, 12.0, "B")]
    assert [t.speaker for t in diarization_to_turns(segs)] == ["A", "B", "B"]
    # one speaker only: no exchange, no turns
    assert diarization_to_turns([(0.0, 1.0, "A"), (1.2, 3.0, "A")]) == []
    assert diarization_to_turns([]) == []
    with pytest.raises(ValueError):
        diarization_to_turns(segs, merge_gap_s=-1)


def test_three_speakers_one_system():
    segs = [(0.0, 3.0, "host"), (3.5, 4.5, "g1"), (5.0, 9.0, "host"), (9.2, 10.0, "g2")]
    got = diarization_to_turns(segs)
    assert {t.speaker: t.role for t in got} == {"host": "system", "g1": "user", "g2": "user"}


def test_speaker_turns_sorts_and_skips_empty():
    assert speaker_turns([(2.0, 3.0, "A"), (0.0, 1.0, "A"), (1.0, 1.0, "B")], merge_gap_s=1.0) == [(0.0, 3.0, "A")]
