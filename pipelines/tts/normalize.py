"""Text as a Telugu voice should say it: numbers, dates, times, money and percentages become Telugu words.

* Telugu digits (౦..౯) count as digits.
* Dates ``3/12/2026``, ``03-12-2026`` (day first, as written in India) and ``2026-12-03`` become
  "<day> <month> <year>" with English month names in Telugu script ("మూడు డిసెంబర్ రెండు వేల ఇరవై ఆరు").
* Times ``10:30`` become "పది ముప్పై"; ``25%`` "ఇరవై ఐదు శాతం"; ``₹500`` / ``Rs 500`` "ఐదు వందల రూపాయలు";
  decimals ``2.5`` "రెండు పాయింట్ ఐదు"; other digit runs are read as whole numbers (Indian grouping: వెయ్యి,
  లక్ష, కోటి; commas in ``1,00,000`` are ignored).
* Words in Latin script (English words, brand names) are **kept as written**: espeak-ng reads them with its own
  letter rules, and a voice whose alphabet lacks them (MMS) rejects the utterance with the reason
  ``unspeakable_text`` naming the words, rather than dropping them silently. Transliterating English into Telugu
  script by rule gives wrong words more often than right ones, so it is not attempted.

The transcript a dialog carries is the original text; only what the voice is given is normalised.
"""

from __future__ import annotations

import re

ONES = ["సున్నా", "ఒకటి", "రెండు", "మూడు", "నాలుగు", "ఐదు", "ఆరు", "ఏడు", "ఎనిమిది", "తొమ్మిది", "పది",
        "పదకొండు", "పన్నెండు", "పదమూడు", "పద్నాలుగు", "పదిహేను", "పదహారు", "పదిహేడు", "పద్దెనిమిది", "పంతొమ్మిది"]
TENS = {2: "ఇరవై", 3: "ముప్పై", 4: "నలభై", 5: "యాభై", 6: "అరవై", 7: "డెబ్బై", 8: "ఎనభై", 9: "తొంభై"}
MONTHS = ["జనవరి", "ఫిబ్రవరి", "మార్చి", "ఏప్రిల్", "మే", "జూన్", "జూలై", "ఆగస్టు", "సెప్టెంబర్", "అక్టోబర్",
          "నవంబర్", "డిసెంబర్"]
# big units: (value, alone, before more / after a multiplier)
_BIG = [(10**7, "కోటి", "కోట్ల"), (10**5, "లక్ష", "లక్షల"), (1000, "వెయ్యి", "వేల")]


def number_words(n: int) -> str:
    """A non-negative integer in Telugu words (colloquial forms; compounds as separate words)."""
    if n < 0:
        return "మైనస్ " + number_words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return TENS[t] + ("" if o == 0 else " " + ONES[o])
    if n < 1000:
        h, r = divmod(n, 100)
        if h == 1:
            head = "వంద" if r == 0 else "నూట"
        else:
            head = ONES[h] + (" వందలు" if r == 0 else " వందల")
        return head + ("" if r == 0 else " " + number_words(r))
    for value, alone, joined in _BIG:
        if n >= value:
            q, r = divmod(n, value)
            if q == 1:
                head = alone
            else:
                head = number_words(q) + " " + (joined if r else {"వెయ్యి": "వేలు", "లక్ష": "లక్షలు",
                                                                 "కోటి": "కోట్లు"}[alone])
            return head + ("" if r == 0 else " " + number_words(r))
    raise AssertionError(n)


def _digits(s: str) -> str:
    return "".join(str(ord(c) - 0x0C66) if "\u0c66" <= c <= "\u0c6f" else c for c in s)


def _date(d: int, m: int, y: int) -> str | None:
    if not (1 <= d <= 31 and 1 <= m <= 12):
        return None
    return f"{number_words(d)} {MONTHS[m - 1]} {number_words(y)}"


_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_DMY = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_MONEY = re.compile(r"(?:₹|\bRs\.?|\bINR)\s*(\d+(?:,\d+)*(?:\.\d+)?)")
_PCT = re.compile(r"(\d+(?:,\d+)*(?:\.\d+)?)\s*%")
_NUM = re.compile(r"\d+(?:,\d+)*(?:\.\d+)?")


def _num(s: str) -> str:
    s = s.replace(",", "")
    whole, _, frac = s.partition(".")
    out = number_words(int(whole))
    if frac:
        out += " పాయింట్ " + " ".join(ONES[int(c)] for c in frac)
    return out


_BEFORE_NOUN = {"వందలు": "వందల", "వేలు": "వేల", "లక్షలు": "లక్షల", "కోట్లు": "కోట్ల"}


def _before_noun(words: str) -> str:
    """"ఐదు వందలు" -> "ఐదు వందల" (the form a count takes before the thing counted)."""
    head, _, last = words.rpartition(" ")
    return f"{head} {_BEFORE_NOUN[last]}" if head and last in _BEFORE_NOUN else words


def to_spoken(text: str) -> str:
    t = _digits(text)

    def iso(m):
        return _date(int(m.group(3)), int(m.group(2)), int(m.group(1))) or m.group(0)

    def dmy(m):
        y = int(m.group(3))
        return _date(int(m.group(1)), int(m.group(2)), y + 2000 if y < 100 else y) or m.group(0)

    def hm(m):
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            return m.group(0)
        return number_words(h) + ("" if mi == 0 else " " + number_words(mi))

    t = _ISO.sub(iso, t)
    t = _DMY.sub(dmy, t)
    t = _TIME.sub(hm, t)
    t = _MONEY.sub(lambda m: _before_noun(_num(m.group(1))) + " రూపాయలు", t)
    t = _PCT.sub(lambda m: _num(m.group(1)) + " శాతం", t)
    t = _NUM.sub(lambda m: _num(m.group(0)), t)
    return " ".join(t.split())


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)
