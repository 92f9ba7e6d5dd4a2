"""Answer a recording: the user's 16 kHz audio in, a stereo conversation out (channel 0 the system's generated
speech, channel 1 the user's input, both the input's length).

Frame by frame, as a live call would run: each hop of input is encoded (the codec's streaming encoder when it has
one), the user frame goes through :func:`lm.generate.step`, and each system frame that comes out is decoded (the
streaming decoder when there is one). The LM answers ``max_delay`` frames late (its acoustic delays); after the
input ends it is fed that many frames of the codec's code for digital silence, so the system channel is complete.
Codecs without a streaming API (``encode``/``decode`` only) are encoded and decoded whole; the LM still steps frame
by frame.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from codec.base import StreamingCodec, check_codec, frame_hop, num_frames
from lm.generate import init_state, step
from lm.model import AudioLM


def _mono(audio: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio).float()
    if x.dim() == 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 1:
        raise ValueError(f"respond takes mono 16 kHz audio [n] or [1, n]; got shape {tuple(x.shape)} (mix it down first)")
    if x.numel() == 0:
        raise ValueError("respond: the input audio is empty")
    return x.cpu()


def check_pair(codec: Any, model: AudioLM) -> None:
    """The codec must be the one whose tokens the LM learnt: same Q and K, 16 kHz."""
    check_codec(codec)
    cfg = model.cfg
    if int(codec.num_codebooks) != cfg.Q or int(codec.codebook_size) != cfg.K:
        raise ValueError(f"codec {codec.codec_id} gives {codec.num_codebooks} codebooks of {codec.codebook_size} codes; "
                         f"the LM was trained on {cfg.Q} x {cfg.K}: use the codec its token shards were encoded with")
    if int(codec.sample_rate) != 16000:
        raise ValueError(f"codec {codec.codec_id} runs at {codec.sample_rate} Hz; respond takes 16 kHz codecs")


@torch.inference_mode()
def respond(audio_in: Any, codec: Any, model: AudioLM, *, temperature: float = 0.8, top_k: int = 250,
            text_temperature: float = 0.7, text_top_k: int = 25, seed: int = 0,
            text_out: list[int] | None = None, codes_out: list[torch.Tensor] | None = None) -> np.ndarray:
    """``audio_in`` 16 kHz mono ``[n]`` / ``[1, n]`` -> float32 ``[2, n]``: channel 0 system, channel 1 the input.
    ``text_out``, when given, receives the system's text tokens (one per frame; models with a text stream);
    ``codes_out`` the system's codes (one CPU ``[1, Q]`` tensor per frame, the frames channel 0 is decoded from)."""
    check_pair(codec, model)
    model.eval()
    user = _mono(audio_in)
    n = user.numel()
    hop = frame_hop(codec)
    frames = num_frames(n, hop)
    dev = model.device
    state = init_state(model, 1, seed=seed)
    kw = dict(temperature=temperature, top_k=top_k, text_temperature=text_temperature, text_top_k=text_top_k)
    silence = silence_frame(codec, hop)
    streaming = isinstance(codec, StreamingCodec) and hop.denominator == 1
    out: list[torch.Tensor] = []
    system_frames: list[torch.Tensor] = []
    dec = codec.init_decode_state(1) if streaming else None

    def feed(frame: torch.Tensor) -> None:
        nonlocal dec
        codes, text = step(model, state, frame.to(dev), **kw)
        if codes is None or len(system_frames) + len(out) >= frames:
            return
        if text_out is not None and text is not None:
            text_out.append(int(text[0]))
        if codes_out is not None:
            codes_out.append(codes.cpu())
        if streaming:
            y, dec = codec.decode_step(codes[..., None], dec)
            out.append(y.reshape(-1).float().cpu())
        else:
            system_frames.append(codes.cpu())

    if streaming:
        h = int(hop)
        enc = codec.init_encode_state(1)
        for i in range(0, n, h):
            codes, enc = codec.encode_step(user[i:i + h].view(1, 1, -1), enc, final=i + h >= n)
            for j in range(codes.shape[-1]):
                feed(codes[:, :, j])
    else:
        codes = codec.encode(user.view(1, 1, -1))
        for j in range(codes.shape[-1]):
            feed(codes[:, :, j])
    for _ in range(model.cfg.max_delay):
        feed(silence)
    if streaming:
        system = torch.cat(out) if out else torch.zeros(0)
    else:
        system = codec.decode(torch.stack(system_frames, dim=-1)).reshape(-1).float().cpu()
    system = system[:n] if system.numel() >= n else torch.nn.functional.pad(system, (0, n - system.numel()))
    return np.stack([system.numpy(), user.numpy()]).astype(np.float32)


def silence_frame(codec: Any, hop: Fraction) -> torch.Tensor:
    """The codec's codes for digital silence ``[1, Q]`` (the last frame of a few silent frames: past the start-up)."""
    zeros = torch.zeros(1, 1, int(4 * hop))
    return codec.encode(zeros)[:, :, -1].long()
