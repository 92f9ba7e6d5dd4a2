"""Quality filters B: the language-ID identifiers, the duplicate fingerprints, and the Goals table.

Three measurements (benchmarks/RESULTS.md, "Quality filters B"):

* ``--part text``: which text identifier is right and fast on Telugu, Hindi, Kannada, English (and code-mixed
  Telugu-English) sentences: py3langid (restricted to the candidates) and lingua-language-detector (restricted to
  the candidates it knows), when installed.
* ``--part dedup``: precision/recall of two near-duplicate fingerprints on constructed cases: espeak-ng Telugu clips
  re-encoded (mp3 32/64 kbps, opus 24 kbps) at another level, a jingle inserted after the speech of other clips;
  against the same sentence by other voices or by the same voice at another pitch, and other sentences. Methods: spectral-peak landmarks (ours,
  pipelines/stages/dedup.py) and a binarised band-energy-difference fingerprint (Haitsma-Kalker style, 32 bits per
  16 ms frame, the best alignment's bit error rate over ``min_match_s``).
* ``--part cost``: the unit processor with and without language ID + fingerprints, side by side in one run.
* ``--part demo``: the default synthetic source through the unit processor: LID rejects and duplicates found.
* ``--part goals``: a real ingest run (manifest source, local Ray) over a set mixed from Telugu (espeak ``te``
  voices with their transcripts), other-language clips (espeak ``hi``, ``kn``, ``en`` with theirs) and music-like
  or noise clips; the share of each class rejected, by reason.

Usage: python benchmarks/filters.py [--part text|dedup|goals|demo|cost|all] [--json OUT] [--no-alt]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HI = ["आज आसमान में बादल छाए हुए हैं और शाम को हल्की बारिश हो सकती है।",
      "कल दोपहर के बाद बारिश हो सकती है, बाहर जाएं तो छाता ले जाना।",
      "धूप में ज़्यादा मत घूमो और बार बार पानी पीते रहो।",
      "हमारे यहाँ बरसात का मौसम आमतौर पर जून में शुरू होता है।",
      "सर्दियों में गरम कपड़े पहनने चाहिए और रात को जल्दी सो जाना चाहिए।",
      "मेरा नाम राजेश है और मैं हैदराबाद में एक स्कूल में पढ़ाता हूँ।",
      "यह सड़क सीधे रेलवे स्टेशन तक जाती है, दस मिनट लगेंगे।",
      "बच्चों को रोज़ सुबह नाश्ता करके ही स्कूल भेजना चाहिए।",
      "बाज़ार में आज सब्ज़ियों के दाम बहुत बढ़ गए हैं।",
      "क्या आप मुझे बता सकते हैं कि सबसे नज़दीकी अस्पताल कहाँ है?"]
KN = ["ಇಂದು ಆಕಾಶ ಮೋಡ ಕವಿದಿದೆ, ಸಂಜೆ ಸ್ವಲ್ಪ ಮಳೆ ಬರುವ ಸಾಧ್ಯತೆ ಇದೆ.",
      "ನಾಳೆ ಮಧ್ಯಾಹ್ನದ ನಂತರ ಮಳೆ ಬರಬಹುದು, ಹೊರಗೆ ಹೋದರೆ ಕೊಡೆ ತೆಗೆದುಕೊಂಡು ಹೋಗಿ.",
      "ಬಿಸಿಲಿನಲ್ಲಿ ಹೆಚ್ಚು ತಿರುಗಾಡಬೇಡಿ, ಆಗಾಗ ನೀರು ಕುಡಿಯಿರಿ.",
      "ನಮ್ಮಲ್ಲಿ ಮಳೆಗಾಲ ಸಾಮಾನ್ಯವಾಗಿ ಜೂನ್ ತಿಂಗಳಿನಲ್ಲಿ ಆರಂಭವಾಗುತ್ತದೆ.",
      "ಚಳಿಗಾಲದಲ್ಲಿ ಬೆಚ್ಚಗಿನ ಬಟ್ಟೆಗಳನ್ನು ಧರಿಸಬೇಕು.",
      "ನನ್ನ ಹೆಸರು ರಮೇಶ್, ನಾನು ಬೆಂಗಳೂರಿನಲ್ಲಿ ಶಿಕ್ಷಕನಾಗಿ ಕೆಲಸ ಮಾಡುತ್ತೇನೆ.",
      "ಈ ರಸ್ತೆ ನೇರವಾಗಿ ರೈಲು ನಿಲ್ದಾಣಕ್ಕೆ ಹೋಗುತ್ತದೆ.",
      "ಮಕ್ಕಳು ಪ್ರತಿದಿನ ಬೆಳಿಗ್ಗೆ ತಿಂಡಿ ತಿಂದು ಶಾಲೆಗೆ ಹೋಗಬೇಕು.",
      "ಇಂದು ಮಾರುಕಟ್ಟೆಯಲ್ಲಿ ತರಕಾರಿಗಳ ಬೆಲೆ ತುಂಬಾ ಏರಿದೆ.",
      "ಹತ್ತಿರದ ಆಸ್ಪತ್ರೆ ಎಲ್ಲಿದೆ ಎಂದು ನನಗೆ ಹೇಳಬಹುದೇ?"]
EN = ["The sky is cloudy today and there may be a little rain in the evening.",
      "It may rain tomorrow afternoon, so take an umbrella if you go out.",
      "Do not walk around in the hot sun and drink water often.",
      "The rainy season usually starts in June with the south west monsoon.",
      "Wear warm clothes in winter and go to bed early at night.",
      "My name is Rajesh and I teach at a school in Hyderabad.",
      "This road goes straight to the railway station, it takes ten minutes.",
      "Children should eat breakfast every morning before going to school.",
      "Vegetable prices in the market have gone up a lot today.",
      "Can you tell me where the nearest hospital is?"]
MIXED = ["నేను ఈ రోజు office కి వెళ్ళి meeting లో ఉంటాను, 5 గంటలకు call చేస్తాను.",
         "మా phone battery పని చేయడం లేదు, కొత్తది order చేశాను.",
         "ఈ weekend మనం movie కి వెళ్దామా?",
         "బస్సు late అయింది, అందుకే class కి ఆలస్యంగా వచ్చాను.",
         "మీ email address నాకు message చేయండి."]


def telugu_texts() -> list[str]:
    from pipelines.sources.synthetic import load_pairs

    return [t for p in load_pairs() for t in (p["q"], p["a"])]


# -- text LID ---------------------------------------------------------------------------------------------------
def part_text() -> dict:
    from pipelines.stages.lid import LidConfig, TextLid

    cases = [(t, "te") for t in telugu_texts()] + [(t, "te") for t in MIXED] + [(t, "hi") for t in HI] + \
        [(t, "kn") for t in KN] + [(t, "en") for t in EN]
    out: dict = {"cases": len(cases)}
    cand = LidConfig().candidates

    def score(name: str, fn) -> None:
        fn(cases[0][0])  # model load not timed
        t0 = time.perf_counter()
        got = [fn(t) for t, _ in cases]
        el = time.perf_counter() - t0
        per = {}
        for lang in ("te", "hi", "kn", "en"):
            idx = [i for i, (_, w) in enumerate(cases) if w == lang]
            per[lang] = f"{sum(got[i] == lang for i in idx)}/{len(idx)}"
        mixed = [i for i, (t, _) in enumerate(cases) if t in MIXED]
        per["code-mixed te"] = f"{sum(got[i] == 'te' for i in mixed)}/{len(mixed)}"
        out[name] = {"right": per, "ms_per_text": round(1000 * el / len(cases), 3)}

    lid = TextLid(LidConfig())
    score("py3langid (candidates)", lambda t: lid.identify(t)[0])
    score("matalu rule (script share + py3langid)", lambda t: lid.judge(t).language)
    try:  # the comparison only: lingua is not a project dependency (pip install lingua-language-detector to run it)
        import importlib

        lingua = importlib.import_module("lingua")
        IsoCode639_1, Language, LanguageDetectorBuilder = lingua.IsoCode639_1, lingua.Language, lingua.LanguageDetectorBuilder

        langs = []
        for c in cand:
            try:
                langs.append(Language.from_iso_code_639_1(getattr(IsoCode639_1, c.upper())))
            except Exception:
                pass
        out["lingua_languages"] = sorted(str(lg.iso_code_639_1.name).lower() for lg in langs)
        det = LanguageDetectorBuilder.from_languages(*langs).build()

        def lingua_id(t: str) -> str:
            lg = det.detect_language_of(t)
            return lg.iso_code_639_1.name.lower() if lg is not None else "?"

        score("lingua (candidates it knows)", lingua_id)
    except ImportError:
        out["lingua"] = "not installed"
    return out


# -- duplicates -------------------------------------------------------------------------------------------------
def _encode(x: np.ndarray, args: list[str], suffix: str, tmp: Path) -> np.ndarray:
    from pipelines.stages.decode import decode_bytes
    from tests.audio import write_as

    src = write_as(tmp / "src.wav", x, 16000)
    dst = tmp / f"enc{suffix}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return decode_bytes(dst.read_bytes(), str(dst), 16000).audio[0]


def hk_bits(x: np.ndarray) -> np.ndarray:
    """Haitsma-Kalker style: 33 log-spaced bands 300-3000 Hz, 32 bits per 16 ms frame (energy-difference signs)."""
    N_FFT, HOP = 512, 256  # noqa: N806 (16 kHz: 32 ms window, 16 ms hop)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), N_FFT)[::HOP] * np.hanning(N_FFT)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.geomspace(300, 3000, 34) / (16000 / N_FFT)
    bands = np.stack([spec[:, int(a):max(int(b), int(a) + 1)].sum(1) for a, b in zip(edges[:-1], edges[1:])], 1)
    d = np.diff(bands, axis=1)  # [T, 32]
    bits = (d[1:] - d[:-1]) > 0
    return np.packbits(bits, axis=1).view(">u4")[:, 0]


def hk_match(a: np.ndarray, b: np.ndarray, min_frames: int, max_ber: float = 0.35) -> bool:
    """True when some alignment has a stretch of ``min_frames`` (or half the shorter clip) with BER <= max_ber."""
    win = min(min_frames, max(8, min(len(a), len(b)) // 2))
    pop = np.vectorize(lambda v: bin(int(v)).count("1"))
    for off in range(-len(b) + win, len(a) - win + 1):
        a0, b0 = max(0, off), max(0, -off)
        n = min(len(a) - a0, len(b) - b0)
        if n < win:
            continue
        errs = pop(a[a0:a0 + n] ^ b[b0:b0 + n])
        run = np.convolve(errs, np.ones(win), "valid") / (32 * win)
        if run.min() <= max_ber:
            return True
    return False


def part_dedup(n_clips: int = 10, alt: bool = True) -> dict:
    from pipelines.sources.synthetic import speak
    from pipelines.stages.dedup import DedupConfig, find_duplicates, fingerprint
    from storage.audio import resample

    cfg = DedupConfig()
    texts = telugu_texts()
    rng = np.random.default_rng(0)

    def say(t: str, voice: str = "te", pitch: int = 50) -> np.ndarray:
        x = resample(speak(t, voice, 150, pitch)[None], 22050, 16000)[0]
        pad = np.zeros(4800, np.float32)
        return np.concatenate([pad, x, pad]) + (1e-3 * rng.standard_normal(len(x) + 9600)).astype(np.float32)

    base = [say(texts[2 * i + 1]) for i in range(n_clips)]
    jingle = say("మా కొత్త దుకాణానికి రండి, అన్ని వస్తువుల మీద సగం ధర తగ్గింపు.", "te+m3", 70)
    tune_t = np.arange(len(jingle)) / 16000
    jingle = jingle + 0.05 * np.sin(2 * np.pi * 440 * tune_t).astype(np.float32)
    clips: list[tuple[str, np.ndarray, str]] = []  # (name, audio, the original it copies or "")
    for i, x in enumerate(base):
        clips.append((f"c{i}", x, ""))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for i, x in enumerate(base):
            kind = i % 3
            if kind == 0:
                clips.append((f"c{i}_mp3_32k_-6dB", _encode(0.5 * x, ["-c:a", "libmp3lame", "-b:a", "32k"], ".mp3", tmp), f"c{i}"))
            elif kind == 1:
                clips.append((f"c{i}_opus_24k_+3dB", _encode(np.clip(1.4 * x, -1, 1), ["-c:a", "libopus", "-b:a", "24k"], ".opus", tmp), f"c{i}"))
            else:
                clips.append((f"c{i}_mp3_64k", _encode(x, ["-c:a", "libmp3lame", "-b:a", "64k"], ".mp3", tmp), f"c{i}"))
    # the same sentence by other voices (not duplicates)
    for i in range(n_clips):
        clips.append((f"c{i}_f3", say(texts[2 * i + 1], "te+f3", 65), ""))
    # the same sentence by the same voice at another pitch (the hard negative: a second take, not a copy)
    for i in range(0, n_clips, 2):
        clips.append((f"c{i}_pitch40", say(texts[2 * i + 1], "te", 40), ""))
    # a jingle after other speech: the first one is the original, the others copy it
    for i in range(4):
        clips.append((f"j{i}", np.concatenate([say(texts[40 + 2 * i]), np.zeros(8000, np.float32), jingle]),
                      "j0" if i else ""))
    truth = {n: o for n, _, o in clips}
    out: dict = {"clips": len(clips), "positives": sum(bool(o) for o in truth.values())}

    # ours: landmarks through find_duplicates (run order = list order)
    t0 = time.perf_counter()
    fps = [fingerprint(n, "mono", n, "b", x[None], 16000, cfg) for n, x, _ in clips]
    t_fp = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = {r.item: r.detail for r in find_duplicates(fps, cfg)}
    t_match = time.perf_counter() - t0
    audio_s = sum(len(x) for _, x, _ in clips) / 16000
    out["landmarks"] = _pr(found, truth) | {"fingerprint_x_realtime": round(audio_s / t_fp), "match_s": round(t_match, 3)}

    out["landmarks"]["landmarks_per_s"] = round(sum(len(f.hashes) for f in fps) / audio_s, 1)
    out["landmarks"]["found"] = found
    if not alt:
        return out
    # alternative: Haitsma-Kalker bits, best alignment BER over min_match_s, each clip against every earlier kept one
    t0 = time.perf_counter()
    bits = [hk_bits(x) for _, x, _ in clips]
    t_fp = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept: list[int] = []
    hk_found = {}
    win = int(cfg.min_match_s * 16000 / 256)
    for i, (n, _, _) in enumerate(clips):
        hit = next((k for k in kept if hk_match(bits[k], bits[i], win)), None)
        if hit is None:
            kept.append(i)
        else:
            hk_found[n] = clips[hit][0]
    t_match = time.perf_counter() - t0
    out["band_energy_bits"] = _pr(hk_found, truth) | {"fingerprint_x_realtime": round(audio_s / t_fp),
                                                      "match_s": round(t_match, 3)}
    return out


def _pr(found: dict, truth: dict) -> dict:
    tp = sorted(n for n in found if truth.get(n))
    fp = sorted(n for n in found if not truth.get(n))
    fn = sorted(n for n, o in truth.items() if o and n not in found)
    prec = len(tp) / max(1, len(tp) + len(fp))
    rec = len(tp) / max(1, len(tp) + len(fn))
    return {"precision": round(prec, 3), "recall": round(rec, 3), "false_positives": fp, "missed": fn}


# -- the Goals table --------------------------------------------------------------------------------------------
def part_goals(n_te: int = 48, n_other: int = 10, n_garbage: int = 16) -> dict:
    import soundfile as sf

    from manifests import read_rows
    from manifests.io import manifest_uri
    from manifests.rows import Reject, Sample
    from pipelines.config import IngestConfig, SourceSpec
    from pipelines.ingest import run_ingest
    from pipelines.sources.synthetic import speak
    from storage.audio import resample

    rng = np.random.default_rng(1)
    te_texts = telugu_texts()

    def say(t: str, voice: str, pitch: int, speed: int) -> np.ndarray:
        x = resample(speak(t, voice, speed, pitch)[None], 22050, 16000)[0]
        pad = np.zeros(4800, np.float32)
        y = np.concatenate([pad, x, pad])
        return (y + 10 ** (-55 / 20) * rng.standard_normal(len(y))).astype(np.float32)

    rows = []  # (id, class, audio, text)
    te_voices = ["te", "te+f3", "te+m3", "te+f2"]
    for i in range(n_te):
        t = te_texts[i % len(te_texts)]
        rows.append((f"te{i:03d}", "telugu", say(t, te_voices[i % 4], 35 + (i * 7) % 40, 140 + (i * 5) % 35), t))
    for lang, voice, texts in (("hindi", "hi", HI), ("kannada", "kn", KN), ("english", "en", EN)):
        for i in range(n_other):
            rows.append((f"{voice}{i:03d}", lang, say(texts[i % len(texts)], voice, 40 + 3 * i, 150), texts[i % len(texts)]))
    for i in range(n_garbage):
        n = int(rng.uniform(3, 8) * 16000)
        t = np.arange(n) / 16000
        if i % 2 == 0:  # music-like: a melody of chords with a beat
            notes = 220 * 2 ** (rng.integers(0, 12, size=n // 4000 + 1) / 12)
            f = np.repeat(notes, 4000)[:n]
            x = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 1.5, 2)) * (0.6 + 0.4 * (np.sin(2 * np.pi * 2 * t) > 0))
            x = 0.2 * x / np.abs(x).max()
            cls = "music"
        else:  # noise: white, or brown-ish
            w = rng.standard_normal(n)
            x = 0.1 * (w if i % 4 == 1 else np.cumsum(w) / np.sqrt(np.arange(1, n + 1)))
            cls = "noise"
        # half of the garbage carries a (wrong) Telugu transcript, as mislabelled crawled data does
        rows.append((f"g{i:03d}", cls, x.astype(np.float32), te_texts[i] if i % 4 < 2 else ""))
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        lines = []
        for rid, _, audio, text in rows:
            sf.write(d / f"{rid}.wav", np.clip(audio, -1, 1), 16000, subtype="PCM_16")
            lines.append(json.dumps({"id": rid, "path": f"{rid}.wav", "text": text, "license": "CC0-1.0"},
                                    ensure_ascii=False))
        (d / "list.jsonl").write_text("\n".join(lines) + "\n")
        cfg = IngestConfig(out=str(d / "out"), sources_dir=str(d / "src"),
                           sources=[SourceSpec("manifest", {"path": str(d / "list.jsonl")})], unit_size=8,
                           num_cpus=2, num_workers=2)
        res = run_ingest(cfg, progress=False, say=lambda s: None)
        samples = read_rows(manifest_uri(cfg.out, "samples"), Sample)
        rejects = read_rows(manifest_uri(cfg.out, "rejects"), Reject)
    cls_of = {rid: c for rid, c, _, _ in rows}
    kept = {s.recording_id for s in samples}
    table: dict = {}
    for c in ("telugu", "hindi", "kannada", "english", "music", "noise"):
        ids = [rid for rid, cc, _, _ in rows if cc == c]
        # a recording counts as rejected when none of it became a sample
        rej = [rid for rid in ids if rid not in kept]
        reasons: dict[str, int] = {}
        for r in rejects:
            if cls_of.get(r.recording_id) == c and r.recording_id not in kept:
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
        table[c] = {"recordings": len(ids), "rejected": len(rej), "share": round(len(rej) / len(ids), 3),
                    "reasons": reasons}
    bad = [c for c in table if c != "telugu"]
    table["non-telugu/garbage"] = {"recordings": sum(table[c]["recordings"] for c in bad),
                                   "rejected": sum(table[c]["rejected"] for c in bad)}
    table["non-telugu/garbage"]["share"] = round(table["non-telugu/garbage"]["rejected"] /
                                                 table["non-telugu/garbage"]["recordings"], 3)
    table["committed"] = res.committed
    return table


# -- the default demo data ---------------------------------------------------------------------------------------
def part_demo() -> dict:
    """The default synthetic source (24 dialogs, what `matalu ingest` makes) through the unit processor, in-process:
    how many samples the language ID rejects and how many the duplicate step would (the rate distribution of the
    closest non-matches shows the margin below ``min_hit_rate``)."""
    from dataclasses import replace

    from jobs.runner import parts_uri
    from manifests import read_rows
    from manifests.rows import Reject
    from pipelines.config import IngestConfig
    from pipelines.ingest import prepare_sources
    from pipelines.stages.dedup import Fingerprint, find_duplicates
    from pipelines.unit import UnitProcessor, make_units

    with tempfile.TemporaryDirectory() as td:
        cfg = IngestConfig(out=str(Path(td) / "out"), sources_dir=str(Path(td) / "src"))
        recs, _ = prepare_sources(cfg, say=lambda s: None)
        units = make_units(recs, cfg.unit_size, cfg.processing_fingerprint())
        proc = UnitProcessor(cfg)
        fps, reasons, samples = [], {}, 0
        for u in units:
            summary = proc.process(u)
            samples += summary["mono"] + summary["dialog"]
            for r in read_rows(parts_uri(cfg.out, u.unit_id) + "/rejects.parquet", Reject):
                reasons[r.reason] = reasons.get(r.reason, 0) + 1
            fps += sorted(read_rows(parts_uri(cfg.out, u.unit_id) + "/fingerprints.parquet", Fingerprint),
                          key=lambda f: f.sample_id)
    dups = find_duplicates(fps, cfg.filters.dedup)
    loose = find_duplicates(fps, replace(cfg.filters.dedup, min_hit_rate=0.0))
    rates = sorted(float(r.detail.split("landmark hits, ")[1].split("%")[0]) for r in loose)
    return {"recordings": len(recs), "samples": samples, "unit_rejects_by_reason": reasons, "duplicates": len(dups),
            "closest_non_matches_rate_pct": rates[-5:]}


# -- what the filters cost in a unit ---------------------------------------------------------------------------
def part_cost(n_files: int = 24, seconds: float = 8.0, repeat: int = 5) -> dict:
    """The unit processor (one thread) on the same corpus as benchmarks/ingest.py, with language ID + fingerprints
    (the defaults) and without (``filters.lid.text`` and ``filters.dedup.enabled`` off), alternated in one run; the
    best of ``repeat`` each. The run-level duplicate step after the merge is timed on the same fingerprints."""
    import torch

    from benchmarks.ingest import make_corpus
    from jobs.runner import parts_uri
    from manifests import read_rows
    from manifests.rows import Recording
    from pipelines.config import IngestConfig
    from pipelines.stages.dedup import Fingerprint, find_duplicates
    from pipelines.unit import UnitProcessor, make_units

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        paths = make_corpus(tmp, n_files, seconds)
        text = telugu_texts()[1]
        recs = [Recording(recording_id=p.stem, source="bench", uri=str(p), speaker_id="s", text=text) for p in paths]
        procs = {}
        for name, on in (("with", True), ("without", False)):
            cfg = IngestConfig(out=str(tmp / name), unit_size=8)
            cfg.filters.lid.text = on
            cfg.filters.dedup.enabled = on
            units = make_units(recs, cfg.unit_size, cfg.processing_fingerprint())
            procs[name] = (UnitProcessor(cfg, "bench"), units, cfg)
            procs[name][0].process(units[0])  # warm-up
        best = {k: float("inf") for k in procs}
        audio_s = 0.0
        for _ in range(repeat):
            for name, (proc, units, _) in procs.items():
                t0 = time.perf_counter()
                got = [proc.process(u) for u in units]
                best[name] = min(best[name], time.perf_counter() - t0)
                audio_s = sum(g["seconds_in"] for g in got)
        proc, units, cfg = procs["with"]
        fps = [f for u in units for f in read_rows(parts_uri(cfg.out, u.unit_id) + "/fingerprints.parquet", Fingerprint)]
        t0 = time.perf_counter()
        find_duplicates(fps, cfg.filters.dedup)
        merge_s = time.perf_counter() - t0
    return {"audio_s": round(audio_s, 1), "unit_s_with": round(best["with"], 3), "unit_s_without": round(best["without"], 3),
            "x_realtime_with": round(audio_s / best["with"]), "x_realtime_without": round(audio_s / best["without"]),
            "overhead_pct": round(100 * (best["with"] / best["without"] - 1), 1), "run_level_step_s": round(merge_s, 3),
            "samples": len(fps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", choices=["text", "dedup", "goals", "demo", "cost", "all"])
    ap.add_argument("--json")
    ap.add_argument("--no-alt", action="store_true", help="dedup: landmarks only (the alternative's matching is slow)")
    a = ap.parse_args()
    out = {}
    for name, fn in (("text", part_text), ("dedup", part_dedup), ("goals", part_goals), ("demo", part_demo),
                     ("cost", part_cost)):
        if a.part in (name, "all"):
            out[name] = fn(alt=not a.no_alt) if name == "dedup" else fn()
            print(json.dumps({name: out[name]}, indent=1, ensure_ascii=False), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
