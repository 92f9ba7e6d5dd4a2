"""The embedded diarizer on real recordings (AMI meeting excerpts in tests/data/diarization, see its README):
DER and speaker counts without hints, level independence, chunked (bounded-memory) analysis, and `matalu
diarize` on an hour of audio within a stated peak RSS."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipelines.stages.der import der, score
from pipelines.stages.diarize import DiarizeConfig, EmbeddedDiarizer, get_diarizer
from pipelines.stages.rttm import read_rttm

DATA = Path(__file__).resolve().parent.parent / "data" / "diarization"
ROOT = Path(__file__).resolve().parents[2]
SR = 16000


@pytest.fixture(scope="module")
def real():
    ref = read_rttm(DATA / "reference.rttm")
    return {n: (sf.read(DATA / f"{n}.flac", dtype="float32")[0], ref[n]) for n in sorted(ref)}


@pytest.fixture(scope="module")
def diarizer():
    return get_diarizer(DiarizeConfig())


def _speakers(segs) -> int:
    return len({k for *_, k in segs})


def test_real_meetings_speaker_count_and_der(real, diarizer):
    hyp = {n: diarizer.diarize(x) for n, (x, _) in real.items()}
    assert _speakers(hyp["dev00"]) == _speakers(hyp["dev01"]) == 2
    rep = score({n: r for n, (_, r) in real.items()}, hyp, (0.0,))
    # Measured (collar 0, overlap scored), with segmentation-3.0 (speech Silero misses, windows cut at speaker
    # changes, a second speaker where two talk with probability >= 0.2, a speaker-count floor, voices heard alone
    # offered as speakers): dev00 11.1 %, dev01 34.3 % (3.3 s of false alarm: the model hears speech in its
    # pauses), trn04 35.9 % (its three speakers found, the third says 3.1 s; 42.7 % with two before the voices were
    # offered); the pair 19.7 %. Last session (hard overlap count, two speakers in trn04): 10.3, 34.1, 45.1, 19.2 %.
    # Without the model: 24.2 %, 23.6 %, 60.8 % (one speaker found), the pair 24.0 %; before issue [8]: 53.0 %,
    # 46.3 %, 52.1 %.
    two = score({n: real[n][1] for n in ("dev00", "dev01")}, {n: hyp[n] for n in ("dev00", "dev01")}, (0.0,))
    assert two.overall[0].der < 0.22, two.overall[0]
    assert rep.files["dev00"][0].der < 0.13 and rep.files["dev01"][0].der < 0.37
    assert rep.files["trn04"][0].der < 0.4 and _speakers(hyp["trn04"]) == 3
    # overlapped speech is emitted: somewhere two speakers talk at once
    segs = hyp["dev00"] + hyp["dev01"]
    assert any(a[2] != b[2] and b[0] < a[1] for h in (hyp["dev00"], hyp["dev01"]) for a, b in zip(h, h[1:])), segs
    # speaker changes inside continuous speech: the two voices of dev00 alternate without pauses
    assert sum(1 for a, b in zip(hyp["dev00"], hyp["dev00"][1:]) if a[2] != b[2] and b[0] - a[1] < 0.05) >= 2


def test_quiet_recording_is_not_silence(real, diarizer):
    x = real["dev01"][0]
    rms = float(np.sqrt(np.mean(x**2)))
    loud = diarizer.diarize(x * (10 ** (-20 / 20) / rms))
    quiet = diarizer.diarize(x * (10 ** (-45 / 20) / rms))
    assert _speakers(quiet) == _speakers(loud) == 2
    assert der(loud, quiet) < 0.02, (loud, quiet)


def test_chunked_and_streamed_analysis_agree(real):
    x = np.concatenate([real["dev00"][0], real["dev01"][0]])  # the same two people, 60 s
    whole = get_diarizer(DiarizeConfig()).diarize(x)
    chunked = EmbeddedDiarizer(DiarizeConfig(chunk_s=20.0))
    many = chunked.diarize_many([x])[0]
    blocks = (x[i : i + 7919] for i in range(0, len(x), 7919))  # odd block sizes
    streamed = chunked.diarize_stream(blocks)
    assert streamed == many
    assert _speakers(many) == _speakers(whole) == 2
    assert der(whole, many) < 0.08  # the three 20 s chunks cut a few windows and VAD states
    with pytest.raises(ValueError, match="chunk_s"):
        DiarizeConfig(chunk_s=5.0).validate()


@pytest.mark.slow
def test_hour_long_file_in_bounded_memory(real, tmp_path):
    """`matalu diarize` on a 1-hour FLAC (the two-person excerpts dev00 + dev01 repeated, a podcast-like hour)
    stays under 1.75 GB peak RSS and finds the two people; the audio alone would be 230 MB as float32. Measured
    1.63 GB on an AMD EPYC machine where importing torch, pyannote.audio, resemblyzer and silero_vad alone takes
    1.18 GB and a 30 s file 1.38 GB (main before this session's diarizer changes: 1.65 GB on it; an earlier machine
    gave 1.48 GB with the segmentation model, 1.32 GB without it)."""
    x = np.concatenate([real["dev00"][0], real["dev01"][0]])
    reps = int(np.ceil(3600 * SR / len(x)))
    path = tmp_path / "hour.flac"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(reps):
            f.write(x)
    out = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "matalu", "diarize", str(path),
                          "--rttm", str(tmp_path / "hour.rttm")], cwd=ROOT, capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
    assert rss_kb < 1.75e6, rss_kb
    segs = read_rttm(tmp_path / "hour.rttm")["hour"]
    assert segs[-1][1] > 3500 and _speakers(segs) == 2


def test_speaker_count_hints(real):
    x = real["dev01"][0]
    d = EmbeddedDiarizer(DiarizeConfig(min_speakers=3))
    assert _speakers(d.diarize(x)) == 3
    d.cfg = DiarizeConfig(max_speakers=1)
    assert _speakers(d.diarize(x)) == 1
    assert _speakers(d.diarize(x, num_speakers=2)) == 2
