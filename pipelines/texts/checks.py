"""What a generated conversation must pass to be kept, each failure a named reason (counted, never a crash).

* ``malformed``: the reply is not one JSON object ``{"turns": [{"q": ..., "a": ...}, ...]}`` (code fences are
  tolerated) with non-empty strings;
* ``truncated``: the endpoint stopped at its token limit (``finish_reason`` "length");
* ``not_telugu``: under ``min_telugu_share`` of a text's letters are in the Telugu block;
* ``too_short`` / ``too_long``: a question or answer outside the character bounds;
* ``prompt_leak``: a text repeats words of the instruction (``prompts.LEAK_MARKERS``);
* ``duplicate``: the same texts (ignoring spaces and punctuation) were kept before;
* ``near_duplicate``: character 5-gram Jaccard similarity at or above ``near_dup_jaccard`` to a kept
  conversation, found with MinHash (64 permutations, 16 bands of 4 rows) and confirmed exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from pipelines.stages.lid import telugu_share
from pipelines.texts.prompts import LEAK_MARKERS


@dataclass
class CheckConfig:
    min_telugu_share: float = 0.85
    q_chars: tuple[int, int] = (8, 400)
    a_chars: tuple[int, int] = (12, 800)
    near_dup_jaccard: float = 0.8


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse(content: str, finish_reason: str) -> list[dict]:
    """The exchanges ``[{"q", "a"}, ...]`` of one reply; :class:`Rejected` when it is cut off or not that shape."""
    if finish_reason == "length":
        raise Rejected("truncated", "the endpoint stopped at its token limit (raise --max-tokens)")
    text = _FENCE.sub("", content.strip())
    try:
        d = json.loads(text)
    except ValueError:
        a, b = text.find("{"), text.rfind("}")  # tolerate a sentence around the object
        try:
            d = json.loads(text[a:b + 1]) if 0 <= a < b else None
        except ValueError:
            d = None
    if d is None:
        raise Rejected("malformed", f"not a JSON object: {content[:80]!r}")
    turns = d.get("turns") if isinstance(d, dict) else None
    if isinstance(d, dict) and turns is None and "q" in d and "a" in d:
        turns = [d]
    if not isinstance(turns, list) or not turns:
        raise Rejected("malformed", 'expected {"turns": [{"q": ..., "a": ...}, ...]}')
    out = []
    for t in turns:
        if not isinstance(t, dict) or not isinstance(t.get("q"), str) or not isinstance(t.get("a"), str) \
                or not t["q"].strip() or not t["a"].strip():
            raise Rejected("malformed", 'each turn needs non-empty string "q" and "a"')
        out.append({"q": " ".join(t["q"].split()), "a": " ".join(t["a"].split())})
    return out


def check_texts(exchanges: list[dict], cfg: CheckConfig) -> None:
    for k, ex in enumerate(exchanges):
        for field, (lo, hi) in (("q", cfg.q_chars), ("a", cfg.a_chars)):
            t = ex[field]
            share = telugu_share(t)[0]
            if share < cfg.min_telugu_share:
                raise Rejected("not_telugu", f"turn {k} {field}: {100 * share:.0f}% Telugu letters: {t[:60]!r}")
            if len(t) < lo:
                raise Rejected("too_short", f"turn {k} {field}: {len(t)} characters (minimum {lo})")
            if len(t) > hi:
                raise Rejected("too_long", f"turn {k} {field}: {len(t)} characters (maximum {hi})")
            low = t.lower()
            leak = next((m for m in LEAK_MARKERS if m in low), None)
            if leak:
                raise Rejected("prompt_leak", f"turn {k} {field} repeats the instruction ({leak!r})")


def canonical(exchanges: list[dict]) -> str:
    """The conversation's letters only (spaces, punctuation and digits dropped): equal texts compare equal."""
    s = "\n".join(f"{e['q']}\n{e['a']}" for e in exchanges)
    return "".join(c for c in unicodedata.normalize("NFC", s) if unicodedata.category(c)[0] in "LM").lower()


class Deduper:
    """Exact (sha256 of the canonical text) and near-duplicate (MinHash LSH over character 5-grams) memory."""

    PERM, BANDS, K = 64, 16, 5

    def __init__(self, jaccard: float) -> None:
        self.jaccard = jaccard
        rng = np.random.default_rng(20261203)
        self._p = np.uint64((1 << 61) - 1)
        self._a = rng.integers(1, (1 << 31) - 1, self.PERM, dtype=np.uint64)
        self._b = rng.integers(0, (1 << 31) - 1, self.PERM, dtype=np.uint64)
        self._exact: set[str] = set()
        self._buckets: dict[tuple[int, bytes], list[int]] = {}
        self._sets: list[set[int]] = []

    def _shingles(self, text: str) -> set[int]:
        grams = {text[i:i + self.K] for i in range(max(1, len(text) - self.K + 1))}
        return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") for g in grams}

    def _signature(self, sh: set[int]) -> np.ndarray:
        x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        return ((self._a[:, None] * x[None, :] + self._b[:, None]) % self._p).min(axis=1)

    def check(self, exchanges: list[dict]) -> None:
        """:class:`Rejected` when a kept conversation equals or nearly equals this one; else remember it."""
        canon = canonical(exchanges)
        h = hashlib.sha256(canon.encode()).hexdigest()
        if h in self._exact:
            raise Rejected("duplicate", "the same texts were kept before")
        sh = self._shingles(canon)
        sig = self._signature(sh)
        rows = self.PERM // self.BANDS
        keys = [(b, sig[b * rows:(b + 1) * rows].tobytes()) for b in range(self.BANDS)]
        seen: set[int] = set()
        for key in keys:
            for j in self._buckets.get(key, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = self._sets[j]
                jac = len(sh & other) / max(1, len(sh | other))
                if jac >= self.jaccard:
                    raise Rejected("near_duplicate", f"{100 * jac:.0f}% of its 5-grams shared with a kept conversation")
        self._exact.add(h)
        self._sets.append(sh)
        for key in keys:
            self._buckets.setdefault(key, []).append(len(self._sets) - 1)
