"""The text stream: a SentencePiece model of the transcripts, tokens on the frames where their words are spoken."""

from __future__ import annotations

import json

import numpy as np
import pytest

import storage
from lm.text import EPAD, PAD, TextAligner, TextTokenizer, align_text, train_tokenizer, word_times
from tests.lm.tokens import write_token_shards


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    write_token_shards(str(d / "tokens"), [6, 6], Q=2, K=16)
    res = train_tokenizer(str(d / "tokens"), str(d / "spm"), vocab_size=60)
    return TextTokenizer.load(str(d / "spm")), res, d


def test_tokenizer_trains_on_the_shards_transcripts(tok):
    t, res, d = tok
    assert res.sentences == 3 and res.vocab_size == t.vocab_size <= 60
    meta = json.loads(storage.read_text(str(d / "spm" / "tokenizer.json")))
    assert meta["pad_id"] == PAD == t.sp.pad_id() and meta["epad_id"] == EPAD == t.sp.piece_to_id("<epad>")
    ids = t.encode("నేను బాగున్నాను")
    assert ids and PAD not in ids and EPAD not in ids and t.decode(ids) == "నేను బాగున్నాను"
    # the same corpus gives the same model
    again = train_tokenizer(str(d / "tokens"), str(d / "spm2"), vocab_size=60)
    assert storage.read_bytes(again.model_uri) == t.model_bytes
    with pytest.raises(FileNotFoundError, match="matalu lm tokenizer"):
        TextTokenizer.load(str(d / "none"))


def test_words_spread_by_characters_over_the_system_turn(tok):
    t = tok[0]
    meta = {"kind": "dialog", "duration_s": 4.0, "turns": [
        {"role": "user", "start_s": 0.0, "end_s": 1.0, "text": "మీరు ఎలా ఉన్నారు"},
        {"role": "system", "start_s": 2.0, "end_s": 4.0, "text": "నేను బాగున్నాను"}]}
    words, approx = word_times(meta)
    # "నేను" (4 chars + space) starts the turn, "బాగున్నాను" starts 5/16 of the way through it
    assert approx and [w for w, _ in words] == ["నేను", "బాగున్నాను"]
    assert words[0][1] == 2.0 and words[1][1] == pytest.approx(2.0 + 2.0 * 5 / 16)
    ids, approx = align_text(meta, 50, 12.5, t)  # 4 s at 12.5 Hz
    first, second = t.encode("నేను"), t.encode("బాగున్నాను")
    assert approx and ids.shape == (50,)
    f0, f1 = 25, int(np.floor((2.0 + 2.0 * 5 / 16) * 12.5))
    assert ids[f0 - 1] == EPAD and list(ids[f0:f0 + len(first)]) == first
    assert list(ids[f1:f1 + len(second)]) == second
    assert set(ids[:f0 - 1]) == {PAD}  # the user's words are not in the system's text stream
    assert set(ids[f1 + len(second):]) == {PAD}


def test_real_word_alignments_win_and_overlaps_push_later(tok):
    t = tok[0]
    meta = {"kind": "mono", "duration_s": 2.0, "text": "నేను బాగున్నాను",
            "words": [{"word": "నేను", "start_s": 0.0, "end_s": 0.1}, {"word": "బాగున్నాను", "start_s": 0.08, "end_s": 1.0}]}
    ids, approx = align_text(meta, 25, 12.5, t)
    a, b = t.encode("నేను"), t.encode("బాగున్నాను")
    assert not approx
    # both words start in frame 0/1: the second follows the first's tokens without an <epad> between them
    assert list(ids[:len(a) + len(b)]) == a + b and EPAD not in ids
    al = TextAligner(t, 12.5)
    al(meta, 25)
    al({"kind": "mono", "duration_s": 1.0, "text": "నేను"}, 12)
    assert al.counts == {"real": 1, "approx": 1}
    # a word past the end of the sample is cut off, not wrapped
    assert (align_text({"kind": "mono", "duration_s": 9.0, "text": "నేను"}, 0, 12.5, t)[0]).shape == (0,)
