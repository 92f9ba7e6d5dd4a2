"""DER/JER (pyannote.metrics) on hand-made RTTMs whose answers are worked out by hand; RTTM I/O; `matalu der`."""

from __future__ import annotations

import argparse
import json

import pytest

from pipelines.stages.der import der, score
from pipelines.stages.rttm import format_rttm, parse_rttm, read_rttm, write_rttm


def run_cmd(module, argv: list[str]) -> int:
    """Run a matalu subcommand module without relying on its registration in matalu.commands."""
    p = argparse.ArgumentParser()
    module.add_parser(p.add_subparsers(dest="cmd", required=True))
    return module.run(p.parse_args(argv))


def rttm(rows: list[tuple[str, float, float, str]]) -> str:
    return "".join(f"SPEAKER {u} 1 {s:.3f} {e - s:.3f} <NA> <NA> {k} <NA> <NA>\n" for u, s, e, k in rows)


def test_confusion_by_hand():
    # ref: A 0-10, B 10-20.  hyp: X 0-12, Y 12-20.  Best map X->A, Y->B; 10-12 is B labelled X.
    ref = [(0.0, 10.0, "A"), (10.0, 20.0, "B")]
    hyp = [(0.0, 12.0, "X"), (12.0, 20.0, "Y")]
    rep = score({"f": ref}, {"f": hyp}, (0.0, 0.25))
    c0, c25 = rep.overall
    # collar 0: confusion 2 s of 20 s reference speech
    assert c0.confusion == pytest.approx(2.0) and c0.missed == 0 and c0.false_alarm == 0
    assert c0.total == pytest.approx(20.0) and c0.der == pytest.approx(0.10)
    # JER: A: 1 - 10/12 ; B: 1 - 8/10 ; mean = (1/6 + 1/5) / 2
    assert c0.jer == pytest.approx((1 / 6 + 1 / 5) / 2)
    # collar 0.25 (pyannote: total width, ±0.125 s) around reference boundaries 0, 10, 20:
    # scored speech 20 - 0.125 - 0.25 - 0.125 = 19.5 s; confusion 10.125..12 = 1.875 s
    assert c25.total == pytest.approx(19.5)
    assert c25.confusion == pytest.approx(1.875)
    assert c25.der == pytest.approx(1.875 / 19.5)
    # JER at 0.25: A: 1 - 9.75/11.625 ; B: 1 - 7.875/9.75
    assert c25.jer == pytest.approx((1 - 9.75 / 11.625 + 1 - 7.875 / 9.75) / 2)


def test_missed_and_false_alarm_by_hand():
    # ref A 0-10; hyp A 2-12: 2 s missed + 2 s false alarm over 10 s
    ref, hyp = [(0.0, 10.0, "A")], [(2.0, 12.0, "S1")]
    assert der(ref, hyp) == pytest.approx(0.40)
    # collar 0.25: scored reference 0.125..9.875 = 9.75 s; missed 0.125..2 = 1.875; FA 10.125..12 = 1.875
    assert der(ref, hyp, collar=0.25) == pytest.approx(3.75 / 9.75)
    # an empty hypothesis misses everything; a perfect one scores 0
    assert der(ref, []) == pytest.approx(1.0)
    assert der(ref, [(0.0, 10.0, "whoever")]) == pytest.approx(0.0)


def test_overlap_is_scored():
    # A 0-10 and B 5-15 overlap for 5 s: 20 s of reference speech. The hypothesis finds one speaker at a time.
    ref = [(0.0, 10.0, "A"), (5.0, 15.0, "B")]
    hyp = [(0.0, 10.0, "X"), (10.0, 15.0, "Y")]
    assert der(ref, hyp) == pytest.approx(5.0 / 20.0)  # B's 5-10 is missed
    assert der(ref, hyp, skip_overlap=True) == pytest.approx(0.0)  # overlap removed: 10 s scored, all right


def test_totals_accumulate_over_files():
    ref = {"a": [(0.0, 10.0, "A")], "b": [(0.0, 30.0, "B")]}
    hyp = {"a": [(0.0, 8.0, "x")], "b": [(0.0, 30.0, "y")], "zzz": [(0.0, 1.0, "q")]}
    rep = score(ref, hyp, (0.0,))
    assert rep.files["a"][0].der == pytest.approx(0.2)
    assert rep.files["b"][0].der == pytest.approx(0.0)
    assert rep.overall[0].der == pytest.approx(2.0 / 40.0)
    assert rep.unmatched_hyp == ["zzz"]


def test_rttm_round_trip_and_errors(tmp_path):
    segs = [(1.5, 3.25, "SPEAKER_01"), (0.0, 1.2, "SPEAKER_00")]
    text = format_rttm(segs, "my file")
    assert text.splitlines()[0] == "SPEAKER my_file 1 0.000 1.200 <NA> <NA> SPEAKER_00 <NA> <NA>"
    p = tmp_path / "x.rttm"
    write_rttm(p, segs, uri="my file")
    assert read_rttm(p) == {"my_file": sorted(segs)}
    assert parse_rttm("# comment\n\nSPKR-INFO f 1 <NA> <NA> <NA> unknown A <NA> <NA>\n") == {}
    with pytest.raises(ValueError, match=r"bad\.rttm:3: onset and duration must be numbers"):
        parse_rttm(text + "SPEAKER f 1 zero 1.0 <NA> <NA> A <NA> <NA>\n", "bad.rttm")
    with pytest.raises(ValueError, match="at least 8 fields"):
        parse_rttm("SPEAKER f 1 0.0 1.0\n")
    with pytest.raises(FileNotFoundError):
        read_rttm(tmp_path / "missing.rttm")


def test_der_command(tmp_path, capsys):
    from matalu.commands import der as der_cmd

    ref, hyp = tmp_path / "ref.rttm", tmp_path / "hyp.rttm"
    ref.write_text(rttm([("f1", 0, 10, "A"), ("f1", 10, 20, "B")]))
    hyp.write_text(rttm([("rec", 0, 12, "X"), ("rec", 12, 20, "Y")]))  # one file each: compared whatever the names
    assert run_cmd(der_cmd, ["der", str(ref), str(hyp), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [s["collar"] for s in d["overall"]] == [0.0, 0.25]
    assert d["overall"][0]["der"] == pytest.approx(0.10)
    assert d["overall"][1]["der"] == pytest.approx(1.875 / 19.5)
    assert d["skip_overlap"] is False and d["renamed"] == {"rec": "f1"}
    assert run_cmd(der_cmd, ["der", str(ref), str(hyp)]) == 0
    table = capsys.readouterr().out
    assert "DER %" in table and "JER %" in table and "10.00" in table and "18.33" in table
    empty = tmp_path / "empty.rttm"
    empty.write_text("")
    with pytest.raises(ValueError, match="no SPEAKER lines"):
        run_cmd(der_cmd, ["der", str(empty), str(hyp)])
