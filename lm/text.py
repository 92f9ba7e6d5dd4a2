"""The optional text stream ("inner monologue"): a SentencePiece model of the Telugu transcripts, and text tokens
placed on the frames where their words are spoken.

``matalu lm tokenizer --data URI --out DIR`` trains the SentencePiece model on the transcripts of an ingest or encode
output (its ``manifests/samples.parquet``: each sample's ``text`` and its turns' texts), or, with no manifest, on the
JSON of the token/segment shards under ``URI``. ``DIR/tokenizer.model`` is the model, ``DIR/tokenizer.json`` says
what it was trained on. Special ids: 0 ``<unk>``, 1 ``<s>``, 2 ``</s>``, 3 ``<pad>`` (no word starts here), 4
``<epad>`` (end of padding: the frame before a word's tokens), as Moshi lays out its text stream.

Placement (:func:`align_text`): the text stream carries what the **system** says (dialog: the turns with role
``system``; mono: the whole sample). A word's tokens go on consecutive frames from the frame where the word starts
(pushed later while the previous word's tokens still occupy it); the frame before them is ``<epad>`` when it is free;
every other frame is ``<pad>``. Word start times come from real alignments when the sample JSON has them (a
``words`` list of ``{word, start_s, end_s}`` on the sample or on a turn); otherwise from the turn's span (mono: the
sample's), spread over its words in proportion to their characters, and the sample counts as ``alignment: approx``
(the training run's ``lineage.json`` gives the counts).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

import storage

UNK, BOS, EOS, PAD, EPAD = 0, 1, 2, 3, 4


class TextTokenizer:
    """A SentencePiece model held as bytes (saved inside checkpoints)."""

    def __init__(self, model_bytes: bytes) -> None:
        import sentencepiece as spm

        self.model_bytes = bytes(model_bytes)
        self.sp = spm.SentencePieceProcessor(model_proto=self.model_bytes)
        if self.sp.pad_id() != PAD or self.sp.piece_to_id("<epad>") != EPAD:
            raise ValueError("not a matalu text tokenizer (pad id 3 and <epad> id 4 expected); "
                             "train one with `matalu lm tokenizer --data URI`")

    @property
    def vocab_size(self) -> int:
        return int(self.sp.get_piece_size())

    pad_id, epad_id = PAD, EPAD

    def encode(self, text: str) -> list[int]:
        return list(self.sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i not in (PAD, EPAD)])

    @classmethod
    def load(cls, uri: str) -> "TextTokenizer":
        """``uri``: a ``tokenizer.model`` file or the folder holding it."""
        if not uri.endswith(".model"):
            uri = storage.join(uri, "tokenizer.model")
        try:
            return cls(storage.read_bytes(uri))
        except FileNotFoundError as e:
            raise FileNotFoundError(f"no tokenizer at {uri}; train one with `matalu lm tokenizer --data URI --out DIR`") from e


def transcripts(uri: str) -> Iterator[str]:
    """Telugu transcripts of an ingest/encode output: its samples manifest when it has one, else the shards' JSON."""
    from lm.data import tokens_root
    from manifests.io import manifest_uri, read_table

    for root in (uri, tokens_root(uri)):
        m = manifest_uri(root, "samples")
        if storage.exists(m):
            t = read_table(m)
            texts = t.column("text").to_pylist() if "text" in t.column_names else []
            turns = t.column("turns").to_pylist() if "turns" in t.column_names else [None] * len(texts)
            for text, tt in zip(texts, turns):
                yield from _texts({"text": text, "turns": tt or []})
            return
    files = [f for f in storage.list_files(uri, ".tar") if "/manifests/" not in f]
    if not files:
        raise FileNotFoundError(f"no manifests/samples.parquet and no shards under {uri}")
    for f in files:
        for _key, members in storage.iter_shard(f):
            if "json" in members:
                yield from _texts(json.loads(members["json"]))


def _texts(meta: dict) -> Iterator[str]:
    turns = [t for t in meta.get("turns") or [] if (t.get("text") or "").strip()]
    if turns:
        for t in turns:
            yield t["text"].strip()
    elif (meta.get("text") or "").strip():
        yield meta["text"].strip()


@dataclass
class TokenizerResult:
    model_uri: str
    vocab_size: int
    sentences: int
    characters: int


def train_tokenizer(data: str, out: str, vocab_size: int = 4000) -> TokenizerResult:
    """Train the SentencePiece model on the transcripts under ``data``; write ``out/tokenizer.model`` and
    ``out/tokenizer.json``. ``vocab_size`` is an upper bound (a small corpus gets fewer pieces)."""
    import sentencepiece as spm

    lines = sorted(set(transcripts(data)))  # sorted: the same corpus gives the same model
    if not lines:
        raise ValueError(f"no transcripts under {data} (the samples have no text); the text stream needs them")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=int(vocab_size), hard_vocab_limit=False,
        model_type="unigram", character_coverage=1.0, unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=PAD,
        user_defined_symbols=["<epad>"], input_sentence_size=2_000_000, shuffle_input_sentence=False,
        seed_sentencepiece_size=100_000, num_threads=1, minloglevel=2)
    tok = TextTokenizer(buf.getvalue())
    model_uri = storage.join(out, "tokenizer.model")
    storage.write_bytes(model_uri, tok.model_bytes)
    res = TokenizerResult(model_uri, tok.vocab_size, len(lines), sum(len(s) for s in lines))
    storage.write_text(storage.join(out, "tokenizer.json"), json.dumps(
        {"data": data, "vocab_size": res.vocab_size, "asked_vocab_size": vocab_size, "sentences": res.sentences,
         "characters": res.characters, "pad_id": PAD, "epad_id": EPAD,
         "sha256": storage.sha256_bytes(tok.model_bytes)}, indent=2) + "\n")
    return res


# -- placement -------------------------------------------------------------------------------------------------
def _float(d: dict, *names: str) -> float:
    for n in names:
        if d.get(n) is not None:
            return float(d[n])
    raise KeyError(names[0])


def word_times(meta: dict) -> tuple[list[tuple[str, float]], bool]:
    """(word, start seconds) of what the system says in this sample, and whether the times are approximate."""
    turns = meta.get("turns") or []
    if meta.get("kind", "mono") == "dialog":
        spans = [t for t in turns if t.get("role") == "system"]
    else:  # mono: everything is the system's speech; one span over the sample when there are no turns
        spans = turns or [{"start_s": 0.0, "end_s": float(meta.get("duration_s") or 0.0), "text": meta.get("text", ""),
                           "words": meta.get("words")}]
    out: list[tuple[str, float]] = []
    approx = False
    for t in spans:
        words = t.get("words")
        if words:
            out += [(str(w.get("word") or w.get("text") or ""), _float(w, "start_s", "start")) for w in words]
            continue
        text = (t.get("text") or "").split()
        if not text:
            continue
        approx = True
        s, e = float(t.get("start_s") or 0.0), float(t.get("end_s") or 0.0)
        lens = [len(w) + 1 for w in text]  # a word and the space after it
        total, acc = float(sum(lens)), 0
        for w, n in zip(text, lens):
            out.append((w, s + (e - s) * acc / total))
            acc += n
    out = [(w, t) for w, t in out if w]
    out.sort(key=lambda x: x[1])
    return out, approx


def align_text(meta: dict, frames: int, frame_rate: float, tok: TextTokenizer) -> tuple[np.ndarray, bool]:
    """int64 ``[frames]`` text ids for one sample (see the module docstring) and whether it is ``alignment: approx``."""
    ids = np.full(frames, tok.pad_id, np.int64)
    words, approx = word_times(meta)
    cursor = 0
    for w, start in words:
        pieces = tok.encode(w)
        if not pieces:
            continue
        f = max(int(math.floor(start * frame_rate + 1e-6)), cursor)
        if f >= frames:
            break
        if f - 1 >= cursor:  # a free frame before the word (none when the previous word runs into it)
            ids[f - 1] = tok.epad_id
        n = min(len(pieces), frames - f)
        ids[f:f + n] = pieces[:n]
        cursor = f + n
    return ids, approx


class TextAligner:
    """The loader's text function: (sample JSON, frames) -> ids; counts real and approximate alignments."""

    def __init__(self, tok: TextTokenizer, frame_rate: float) -> None:
        self.tok, self.frame_rate = tok, frame_rate
        self.counts = {"real": 0, "approx": 0}

    def __call__(self, meta: dict, frames: int) -> np.ndarray:
        ids, approx = align_text(meta, frames, self.frame_rate, self.tok)
        self.counts["approx" if approx else "real"] += 1
        return ids
