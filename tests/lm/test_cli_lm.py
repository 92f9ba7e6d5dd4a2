"""`matalu lm tokenizer | train --local | eval` through the CLI, and `matalu submit lm train` argument handling."""

from __future__ import annotations

import json
import math

import pytest

from matalu.cli import main
from tests.lm.tokens import write_token_shards


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    d = tmp_path_factory.mktemp("clitok")
    write_token_shards(str(d / "enc" / "tokens" / "testcodec"), [6, 5, 7, 4], Q=3, K=32, frames=(30, 90))
    return d


def test_tokenizer_train_eval(tokens, capsys):
    enc, tok, run = tokens / "enc", tokens / "tok", tokens / "run"
    assert main(["lm", "tokenizer", "--data", str(enc), "--out", str(tok), "--vocab", "50"]) == 0
    assert "tokenizer" in capsys.readouterr().out and (tok / "tokenizer.model").exists()
    # --data is the encode output (its one tokens/<codec_id>/), the text stream is on through --tokenizer
    conf = tokens / "lm.yaml"
    conf.write_text("train: {val_fraction: 0.3, val_every: 2, log_every: 2}\n")
    assert main(["lm", "train", "--local", "--config", str(conf), "--data", str(enc), "--out", str(run),
                 "--steps", "4", "--batch-size", "2", "--tokenizer", str(tok)]) == 0
    out = capsys.readouterr().out
    assert "[lm] step 4/4" in out and "text" in out and "tok/s" in out and "val" in out
    meta = json.loads((run / "checkpoints" / "step-0000004" / "meta.json").read_text())
    assert meta["model"]["text_vocab"] > 5 and meta["model"]["text_epad_id"] == 4
    assert (run / "checkpoints" / "step-0000004" / "tokenizer.model").read_bytes() == (tok / "tokenizer.model").read_bytes()
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["text_alignment"]["approx"] > 0 and line["text_alignment"]["real"] == 0

    assert main(["lm", "eval", "--lm", str(run), "--data", str(enc)]) == 0
    table = capsys.readouterr().out
    for name in ("audio_cb0", "audio_cb1", "audio_cb2", "text", "perplexity"):
        assert name in table
    assert main(["lm", "eval", "--lm", str(run), "--data", str(enc), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    st = res["streams"]
    assert res["step"] == 4 and res["samples"] == 22 and res["padding_fraction"] < 0.05
    assert set(st) == {"audio", "audio_cb0", "audio_cb1", "audio_cb2", "text"}
    for v in st.values():
        assert v["tokens"] > 0 and v["perplexity"] == pytest.approx(math.exp(v["loss"]), rel=1e-6)
    # a barely trained model: per-codebook perplexity near the uniform K=32
    assert 10 < st["audio_cb1"]["perplexity"] < 60
    # the run's held-out split only
    assert main(["lm", "eval", "--lm", str(run), "--data", str(enc), "--split", "val", "--json",
                 str(tokens / "val.json")]) == 0
    val = json.loads((tokens / "val.json").read_text())
    assert 0 < val["samples"] < 22


def test_eval_errors_are_one_line(tokens, tmp_path, capsys):
    assert main(["lm", "eval", "--lm", str(tmp_path / "none"), "--data", str(tokens / "enc")]) == 2
    assert "no LM checkpoint" in capsys.readouterr().err
    assert main(["lm", "train", "--local", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no token shards" in capsys.readouterr().err


def test_submit_makes_lm_paths_absolute():
    """`matalu submit lm train …` to a head on this machine: local --data/--out/--tokenizer/--lm become absolute;
    hf:DIR and s3:// URIs are left to the job; to a remote head a local --data is refused."""
    from matalu.submit import shared_args

    local = "http://127.0.0.1:8265"
    out = shared_args(["lm", "train", "--data", "data/demo", "--out", "data/lm", "--tokenizer", "tok",
                       "--init", "hf:models/smol"], local)
    assert all(out[i + 1].startswith("/") for i, a in enumerate(out) if a in ("--data", "--out", "--tokenizer"))
    assert out[out.index("--init") + 1] == "hf:models/smol"
    assert shared_args(["lm", "eval", "--lm", "s3://b/lm", "--data", "s3://b/tokens"], local)[-1] == "s3://b/tokens"
    assert shared_args(["lm", "eval", "--lm", "runs/lm"], local)[-1].startswith("/")
    with pytest.raises(ValueError, match="s3://"):
        shared_args(["lm", "train", "--data", "data/demo"], "http://10.1.2.3:8265")
