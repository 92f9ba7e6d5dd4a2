"""Public codecs (EnCodec, DAC, Mimi) from local transformers model folders, behind the 16 kHz Codec protocol.

The folders are made here with small randomly initialised models (``save_pretrained``): the adapters' plumbing
(loading, resampling, frame rule, codebook choice, codec ids, the encode job) does not depend on trained weights."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

import storage  # noqa: E402
from codec.adapters import load_codec  # noqa: E402
from codec.base import Codec, frame_hop, num_frames  # noqa: E402
from manifests.io import manifest_uri, read_rows  # noqa: E402
from manifests.rows import Sample  # noqa: E402
from pipelines.encode import EncodeConfig, run_encode  # noqa: E402

SMALL = {
    "encodec": lambda: transformers.EncodecModel(transformers.EncodecConfig(
        num_filters=4, hidden_size=32, codebook_dim=32, num_lstm_layers=1)),
    "dac": lambda: transformers.DacModel(transformers.DacConfig(
        encoder_hidden_size=8, decoder_hidden_size=32, hidden_size=64, n_codebooks=12)),
    "mimi": lambda: transformers.MimiModel(transformers.MimiConfig(
        hidden_size=64, upsample_groups=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=128, num_filters=4, codebook_dim=32, num_quantizers=16,
        vector_quantization_hidden_dimension=32, head_dim=32)),
}
# name -> (model rate, frame rate, codebook size)
EXPECT = {"encodec": (24000, 75.0, 1024), "dac": (16000, 31.25, 1024), "mimi": (24000, 12.5, 2048)}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = {}
    for name, make in SMALL.items():
        torch.manual_seed(0)
        d = tmp_path_factory.mktemp(name)
        make().eval().save_pretrained(str(d))
        out[name] = d
    return out


def speech(b: int, t: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    n = torch.arange(t) / 16000
    return (0.1 * torch.sin(2 * torch.pi * 180 * n) * (torch.sin(2 * torch.pi * 3 * n) > 0)
            + 0.01 * torch.randn(b, 1, t, generator=g)).float()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_adapter_speaks_16k_with_the_frame_rule(name, folders):
    rate, fr, k = EXPECT[name]
    c = load_codec(f"{name}:{folders[name]}")
    assert isinstance(c, Codec)
    assert (c.sample_rate, c.frame_rate, c.num_codebooks, c.codebook_size) == (16000, fr, 8, k)
    assert c.codec_id.startswith(f"{name}-q8-") and len(c.codec_id.rsplit("-", 1)[1]) == 12
    for t in (16000, 16123, 3001):
        x = speech(2, t)
        codes = c.encode(x)
        frames = num_frames(t, frame_hop(c))
        assert frames == -(-t * int(fr * 100) // (16000 * 100))  # ceil(t × frame_rate / 16000)
        assert codes.dtype == torch.int64 and codes.shape == (2, 8, frames)
        assert 0 <= int(codes.min()) and int(codes.max()) < k
        y = c.decode(codes)
        assert y.shape[:2] == (2, 1) and abs(y.shape[-1] - frames * 16000 / fr) <= 16000 / fr
    # the adapter feeds the model what the model's own processor would: resampled audio, whole frames
    x = speech(1, 16000)
    m = c.model
    xm = x if rate == 16000 else __import__("torchaudio").functional.resample(x, 16000, rate)
    with torch.no_grad():
        if name == "encodec":
            own = m.encode(xm, bandwidth=6.0).audio_codes[0]
        elif name == "dac":
            xm = torch.nn.functional.pad(xm, (0, (-xm.shape[-1]) % 512))
            own = m.encode(xm, n_quantizers=8).audio_codes
        else:
            own = m.encode(xm, num_quantizers=8).audio_codes
    assert torch.equal(c.encode(x), own[:, :8, : c.encode(x).shape[-1]])


def test_codebooks_ids_and_errors(folders, tmp_path):
    mimi = folders["mimi"]
    a, b = load_codec(f"mimi:{mimi}"), load_codec(f"mimi:{mimi}#q=4")
    assert a.codec_id == load_codec(f"mimi:{mimi}").codec_id  # same weights, same id
    assert b.num_codebooks == 4 and b.codec_id.startswith("mimi-q4-") and b.codec_id[-12:] == a.codec_id[-12:]
    assert b.encode(speech(1, 8000)).shape == (1, 4, 7)  # ceil(0.5 s × 12.5)
    other = tmp_path / "mimi2"
    torch.manual_seed(1)
    SMALL["mimi"]().save_pretrained(str(other))
    assert load_codec(f"mimi:{other}").codec_id != a.codec_id  # other weights, other id
    assert load_codec(f"dac:{folders['dac']}#q=12").num_codebooks == 12
    with pytest.raises(ValueError, match="at most 12 codebooks"):
        load_codec(f"dac:{folders['dac']}#q=13")
    with pytest.raises(ValueError, match=r"valid #q: \[2, 4, 8, 16, 32\]"):
        load_codec(f"encodec:{folders['encodec']}#q=3")
    with pytest.raises(ValueError, match="expected #q=N"):
        load_codec(f"mimi:{mimi}#bandwidth=6")
    with pytest.raises(FileNotFoundError, match=r"kyutai/mimi.*nothing is downloaded"):
        load_codec(f"mimi:{tmp_path}/nope")
    empty = tmp_path / "only-config"
    empty.mkdir()
    shutil.copy(mimi / "config.json", empty / "config.json")
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load_codec(f"mimi:{empty}")
    with pytest.raises(ValueError, match="different frame rates"):
        load_codec(f"snac:{tmp_path}")


def test_encode_job_with_encodec_at_75_hz(one_mono_shard, folders, tmp_path):
    """EnCodec 24 kHz at 75 Hz has a fractional hop at 16 kHz (640/3 samples): the job pads batches to whole frames
    and every token shard holds ceil(duration × 75) frames."""
    res = run_encode(EncodeConfig(segments=str(one_mono_shard), codec=f"encodec:{folders['encodec']}",
                                  out=str(tmp_path / "out"), num_workers=1))
    assert res.committed and res.codec_id.startswith("encodec-q8-")
    n = 0
    for uri in storage.list_files(res.out, ".tar"):
        for _key, m in storage.iter_shard(uri):
            meta = json.loads(m["json"])
            codes = np.load(io.BytesIO(m["codes.npy"]))
            samples = int(round(meta["duration_s"] * 16000))
            assert codes.shape == (8, -(-samples * 75 // 16000)) and meta["frame_rate"] == 75.0
            n += 1
    assert n == len(read_rows(manifest_uri(res.out, "samples"), Sample)) > 0
