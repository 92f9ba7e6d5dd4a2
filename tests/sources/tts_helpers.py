"""Test helpers for the TTS voices: a tiny random MMS-TTS folder, short Telugu texts, a small TTS program."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHORT = [("ఎలా ఉన్నారు?", "బాగున్నాను."), ("ఇది ఏమిటి?", "ఇది పుస్తకం."), ("ఎక్కడికి?", "బడికి."),
         ("ధర ఎంత?", "₹50 మాత్రమే."), ("సమయం ఎంత?", "10:30 అయింది."), ("పేరు ఏమిటి?", "నా పేరు రాము."),
         ("వర్షం పడుతుందా?", "అవును, పడుతుంది."), ("తిన్నారా?", "తిన్నాను.")]


def short_texts(path: Path, extra: list[tuple[str, str]] = ()) -> Path:
    rows = [{"id": f"s{i}", "q": q, "a": a} for i, (q, a) in enumerate([*SHORT, *extra])]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_mms(folder: Path, hidden: int = 16) -> Path:
    """A random VitsModel (+ VitsTokenizer over the Telugu block) saved with save_pretrained: MMS-TTS's layout."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    chars = ["<pad>", " "] + [chr(c) for c in range(0x0C00, 0x0C80)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}, ensure_ascii=False))
    tok = VitsTokenizer(str(folder / "vocab.json"), language="tel", phonemize=False, is_uroman=False)
    tok.save_pretrained(folder)
    cfg = VitsConfig(vocab_size=len(chars), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     ffn_dim=32, flow_size=hidden, spectrogram_bins=33, upsample_initial_channel=32,
                     upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8], resblock_kernel_sizes=[3],
                     resblock_dilation_sizes=[[1, 3]], prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
                     posterior_encoder_num_wavenet_layers=1, duration_predictor_num_flows=1,
                     duration_predictor_filter_channels=16, sampling_rate=16000)
    torch.manual_seed(0)
    model = VitsModel(cfg)
    with torch.no_grad():  # random weights saturate the waveform; scaled down it is not clipped audio
        model.decoder.conv_post.weight *= 0.02
    model.save_pretrained(folder)
    return folder


TTS_SCRIPT = '''
import math, struct, sys, wave
text = sys.stdin.read()
if "X" in text:
    print("cannot say the letter X", file=sys.stderr)
    sys.exit(3)
voice = int(sys.argv[2])
sr, n = 16000, 1600 * max(1, len(text) // 3)
frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * (180 + 40 * voice) * i / sr))) for i in range(n))
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr); w.writeframes(frames)
'''


def tts_program(folder: Path) -> str:
    """A small local TTS program (text on stdin, WAV to argv[1], voice argv[2]); fails on text with 'X'."""
    p = folder / "tinytts.py"
    p.write_text(TTS_SCRIPT)
    return f"{sys.executable} {p} {{out}} {{voice}}"
