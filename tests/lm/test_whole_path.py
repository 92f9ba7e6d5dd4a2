"""The README's whole path on tiny sizes: ingest (the session's synthetic run) -> codec train (a few steps) ->
encode -> lm train (2 Ray Train workers) -> lm respond writes a stereo WAV of the input's length."""

from __future__ import annotations

import json

import numpy as np
import pytest

import storage
from matalu.cli import main


@pytest.mark.slow  # 206 s measured on a loaded 2-CPU box (codec steps, encode job, a 2-worker TorchTrainer, generation);
# each stage has its fast tests (tests/codec, tests/lm/test_train.py, test_cli_lm.py, lm-model's respond test)
def test_ingest_codec_encode_lm_respond(ingested, tmp_path, capsys):
    from codec.train import CodecTrainConfig, train_local
    from pipelines.encode import EncodeConfig, run_encode
    from storage.audio import decode_audio, encode_wav

    cfg, _ = ingested
    codec_out = str(tmp_path / "codec")
    train_local(CodecTrainConfig(size="tiny", batch_size=2, segment_s=0.32, pool_size=8), cfg.out, 3, out=codec_out)
    enc = run_encode(EncodeConfig(segments=cfg.out, codec=codec_out, out=str(tmp_path / "enc"), num_workers=2))
    assert enc.committed
    lm_out = tmp_path / "lm"
    assert main(["lm", "train", "--data", str(tmp_path / "enc"), "--out", str(lm_out), "--size", "tiny",
                 "--steps", "4", "--num-workers", "2", "--batch-size", "2"]) == 0
    assert "[lm] done" in capsys.readouterr().out
    meta = json.loads(storage.read_text(f"{lm_out}/checkpoints/step-0000004/meta.json"))
    assert meta["lineage"]["codec_id"] == enc.codec_id and meta["lineage"]["manifests"] is True
    assert meta["lineage"]["hours_per_license"] and meta["lineage"]["token_run_ids"]
    assert meta["world"] == 2

    # the user's side: one channel of a dialog window, as a WAV
    seg = sorted(storage.list_files(f"{cfg.out}/segments/synthetic/dialog", ".tar"))[0]
    from storage.audio import read_sample

    _key, members = next(storage.iter_shard(seg))
    _meta, audio = read_sample(members)
    user = audio[1:2, : 16000 * 2]
    wav_in = tmp_path / "in.wav"
    wav_in.write_bytes(encode_wav(user, 16000))
    wav_out = tmp_path / "out.wav"
    assert main(["lm", "respond", str(wav_in), "--codec", codec_out, "--lm", str(lm_out), "-o", str(wav_out)]) == 0
    out, sr = decode_audio(wav_out.read_bytes())
    assert sr == 16000 and out.shape == (2, user.shape[1])
    assert np.abs(out[1] - user[0]).max() < 1e-3  # channel 1 is the input (16-bit rounding)
    assert np.abs(out[0]).max() > 0  # the system spoke (an untrained LM's codes still decode to sound)
