"""Diarization error rate (DER) and Jaccard error rate (JER) with pyannote.metrics.

DER = (missed speech + false alarm + speaker confusion) / reference speech, under the optimal one-to-one
mapping of hypothesis speakers to reference speakers. Overlapped speech is scored (``skip_overlap=False``):
where two reference speakers talk at once, both must be found.

Collars follow pyannote.metrics: ``collar=c`` removes a window of total width ``c`` centred on every reference
boundary (``c/2`` before and after), so ``collar=0.25`` forgives ±0.125 s. ``collar=0`` forgives nothing.

JER (DIHARD II) is the mean over reference speakers of 1 - |ref ∩ hyp| / |ref ∪ hyp| for the speaker's
mapped hypothesis speaker (1 for a reference speaker left unmapped).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

Segment = tuple[float, float, str]
COLLARS = (0.0, 0.25)


@dataclass
class Score:
    collar: float
    der: float  # fraction (0.1 = 10 %)
    missed: float  # seconds
    false_alarm: float
    confusion: float
    total: float  # reference speech seconds scored
    jer: float  # fraction

    @property
    def missed_rate(self) -> float:
        return self.missed / self.total if self.total else 0.0

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarm / self.total if self.total else 0.0

    @property
    def confusion_rate(self) -> float:
        return self.confusion / self.total if self.total else 0.0


@dataclass
class Report:
    files: dict[str, list[Score]] = field(default_factory=dict)  # uri -> one Score per collar
    overall: list[Score] = field(default_factory=list)  # accumulated over files, one per collar
    unmatched_hyp: list[str] = field(default_factory=list)  # hypothesis uris with no reference (not scored)
    renamed: dict[str, str] = field(default_factory=dict)  # hypothesis uri -> reference uri it was scored as
    skip_overlap: bool = False

    def to_dict(self) -> dict:
        def sd(s: Score) -> dict:
            d = asdict(s)
            d.update(missed_rate=s.missed_rate, false_alarm_rate=s.false_alarm_rate, confusion_rate=s.confusion_rate)
            return d

        return {
            "skip_overlap": self.skip_overlap,
            "collar_convention": "pyannote.metrics: total width centred on each reference boundary",
            "files": {u: [sd(s) for s in ss] for u, ss in self.files.items()},
            "overall": [sd(s) for s in self.overall],
            "unmatched_hyp": self.unmatched_hyp,
            "renamed": self.renamed,
        }


def annotation(segments: list[Segment], uri: str = "audio"):
    from pyannote.core import Annotation
    from pyannote.core import Segment as PSeg

    ann = Annotation(uri=uri)
    for i, (s, e, k) in enumerate(segments):
        if e > s:
            ann[PSeg(float(s), float(e)), i] = str(k)
    return ann


def _uem(ref: list[Segment], hyp: list[Segment]):
    from pyannote.core import Segment as PSeg
    from pyannote.core import Timeline

    end = max([e for _, e, _ in ref] + [e for _, e, _ in hyp] + [0.0])
    return Timeline([PSeg(0.0, end)]) if end > 0 else Timeline()


def score(ref: dict[str, list[Segment]], hyp: dict[str, list[Segment]],
          collars: tuple[float, ...] | list[float] = COLLARS, skip_overlap: bool = False) -> Report:
    """Score every reference file (a missing hypothesis counts as all speech missed). When both sides hold
    exactly one file, they are compared whatever their names."""
    from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

    rep = Report(skip_overlap=skip_overlap)
    hyp = dict(hyp)
    if len(ref) == 1 and len(hyp) == 1 and set(ref) != set(hyp):
        (r,), (h,) = list(ref), list(hyp)
        hyp = {r: hyp[h]}
        rep.renamed[h] = r
    rep.unmatched_hyp = sorted(set(hyp) - set(ref))
    for c in collars:
        der_m = DiarizationErrorRate(collar=c, skip_overlap=skip_overlap)
        jer_m = JaccardErrorRate(collar=c, skip_overlap=skip_overlap)
        for uri in sorted(ref):
            r, h = ref[uri], hyp.get(uri, [])
            ra, ha, uem = annotation(r, uri), annotation(h, uri), _uem(r, h)
            d = der_m(ra, ha, uem=uem, detailed=True)
            j = jer_m(ra, ha, uem=uem)
            rep.files.setdefault(uri, []).append(Score(
                collar=c, der=float(d["diarization error rate"]), missed=float(d["missed detection"]),
                false_alarm=float(d["false alarm"]), confusion=float(d["confusion"]), total=float(d["total"]),
                jer=float(j)))
        tot = der_m[:]  # accumulated components
        rep.overall.append(Score(
            collar=c, der=float(abs(der_m)), missed=float(tot["missed detection"]),
            false_alarm=float(tot["false alarm"]), confusion=float(tot["confusion"]), total=float(tot["total"]),
            jer=float(abs(jer_m))))
    return rep


def der(ref: list[Segment], hyp: list[Segment], collar: float = 0.0, skip_overlap: bool = False) -> float:
    """DER of one recording (fraction)."""
    return score({"a": ref}, {"a": hyp}, (collar,), skip_overlap).overall[0].der


def render(rep: Report, file=None) -> None:
    """A plain-text table: one row per file and collar, then the totals."""
    import sys

    file = file or sys.stdout
    cols = f"{'file':<28} {'collar':>6} {'speech s':>9} {'DER %':>7} {'miss %':>7} {'FA %':>6} {'conf %':>7} {'JER %':>7}"
    print(cols, file=file)
    print("-" * len(cols), file=file)

    def row(name: str, s: Score) -> None:
        print(f"{name[:28]:<28} {s.collar:>6.2f} {s.total:>9.2f} {100 * s.der:>7.2f} {100 * s.missed_rate:>7.2f} "
              f"{100 * s.false_alarm_rate:>6.2f} {100 * s.confusion_rate:>7.2f} {100 * s.jer:>7.2f}", file=file)

    for uri, ss in rep.files.items():
        for s in ss:
            row(uri, s)
    if len(rep.files) != 1:  # one file: its rows are the totals
        print("-" * len(cols), file=file)
        for s in rep.overall:
            row("TOTAL", s)
    print(f"overlap {'not scored' if rep.skip_overlap else 'scored'}; collar = total width centred on each reference "
          "boundary (pyannote.metrics)", file=file)
    for h, r in rep.renamed.items():
        print(f"note: hypothesis file {h!r} scored against reference {r!r}", file=file)
    if rep.unmatched_hyp:
        print(f"note: hypothesis files with no reference (not scored): {', '.join(rep.unmatched_hyp)}", file=file)
