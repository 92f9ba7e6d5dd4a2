"""respond: user audio in -> stereo out (channel 0 the system, channel 1 the input), the input's length, through a
real (tiny) codec saved and loaded as `matalu lm respond --codec` loads it; streaming and whole-clip codecs agree."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lm_helpers import save_tiny_codec, speechlike, tiny_lm

from codec.model import CodecConfig, CodecModel
from lm.respond import respond

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    return save_tiny_codec(tmp_path_factory.mktemp("codec") / "run")


class WholeClip:
    """The same codec behind the plain Codec protocol (encode/decode only, no streaming API)."""

    def __init__(self, c):
        self._c = c
        for a in ("codec_id", "sample_rate", "frame_rate", "num_codebooks", "codebook_size"):
            setattr(self, a, getattr(c, a))

    def encode(self, wav):
        return self._c.encode(wav)

    def decode(self, codes):
        return self._c.decode(codes)


def test_respond_is_stereo_of_the_input_length(tiny_codec):
    codec = tiny_codec
    lm = tiny_lm(q=codec.num_codebooks, k=codec.codebook_size, text_vocab=40)
    x = speechlike(11_683)  # 0.73 s: not a whole number of 20 ms frames
    text: list[int] = []
    y = respond(x, codec, lm, seed=1, text_out=text)
    assert y.shape == (2, 11_683) and y.dtype == np.float32
    assert np.array_equal(y[1], x)  # channel 1 is the user's input as given
    assert np.isfinite(y[0]).all() and float(np.abs(y[0]).max()) > 0
    assert len(text) == math.ceil(11_683 / 320) and all(0 <= t < 40 for t in text)
    # frame-by-frame streaming encode/decode == the whole-clip path (same seed, same samples drawn)
    z = respond(x[None], WholeClip(codec), lm, seed=1)
    np.testing.assert_allclose(z, y, atol=1e-4)
    assert not np.allclose(respond(x, codec, lm, seed=2)[0], y[0])


def test_respond_rejects_mismatches(tiny_codec):
    with pytest.raises(ValueError, match="the LM was trained on 4 x 32: use the codec its token shards were encoded with"):
        respond(speechlike(1000), tiny_codec, tiny_lm(q=4, k=32))
    lm = tiny_lm(q=tiny_codec.num_codebooks, k=tiny_codec.codebook_size)
    with pytest.raises(ValueError, match="mono 16 kHz audio"):
        respond(np.zeros((2, 1000), np.float32), tiny_codec, lm)


def test_respond_at_another_frame_rate():
    """Nothing assumes 50 Hz: a 25 Hz codec (hop 640) with 4 codebooks and a Q=4 LM with its own delays."""
    torch.manual_seed(0)
    codec = CodecModel(CodecConfig.preset("tiny", strides=[2, 4, 5, 8, 2], num_codebooks=4, codebook_size=64)).eval()
    assert codec.frame_rate == 25.0
    lm = tiny_lm(q=4, k=64, delays=[0, 1, 2, 2])
    y = respond(speechlike(9_001), codec, lm, seed=0)
    assert y.shape == (2, 9_001) and np.isfinite(y).all() and float(np.abs(y[0]).max()) > 0
