"""Topic and style lists, and the chat prompt for one request (everything drawn from the request's own seed).

A request ``i`` of a run with seed ``s`` always gets the same topic, style, exchange count and LLM seed, so a rerun
asks the same questions and a resumed run carries on where the last kept pair's request left off."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Topic:
    key: str
    about: str  # what the conversation is about, in English for the instruction


@dataclass(frozen=True)
class Style:
    key: str
    exchanges: tuple[int, int]  # question/answer exchanges in one conversation (inclusive range)
    how: str


TOPICS: tuple[Topic, ...] = (
    Topic("everyday", "everyday life at home: cooking, shopping, family plans, chores"),
    Topic("weather", "the weather, seasons, rain and what to wear or do"),
    Topic("health", "common health questions: fever, diet, exercise, sleep, when to see a doctor"),
    Topic("farming", "farming in Andhra Pradesh and Telangana: crops, seeds, irrigation, markets, pests"),
    Topic("cinema", "Telugu cinema: films, actors, songs, going to the theatre"),
    Topic("education", "school and college: exams, subjects, admissions, studying tips"),
    Topic("travel", "travel by bus, train or auto-rickshaw: tickets, routes, timings"),
    Topic("food", "Telugu food: recipes, festivals dishes, restaurants"),
    Topic("festivals", "festivals such as Sankranti, Ugadi, Diwali and Bathukamma"),
    Topic("banking", "banking and money: accounts, UPI payments, loans, saving"),
    Topic("technology", "mobile phones, internet, apps and computers"),
    Topic("sports", "cricket, kabaddi and other sports"),
    Topic("government", "government services: ration card, Aadhaar, pensions, certificates"),
    Topic("jobs", "jobs and work: interviews, salaries, office life, small businesses"),
    Topic("history", "the history and places of Andhra Pradesh and Telangana"),
    Topic("children", "bringing up children: school, games, food, habits"),
)

STYLES: tuple[Style, ...] = (
    Style("single", (1, 1), "one short spoken question and a helpful spoken answer"),
    Style("followup", (2, 3), "a question, its answer, then follow-up questions that build on the answers"),
    Style("casual", (2, 4), "a friendly, casual chat where the user asks and the assistant answers briefly"),
    Style("advice", (1, 2), "the user asks for practical advice and the assistant gives clear steps"),
    Style("explain", (1, 2), "the user asks how or why something works and the assistant explains simply"),
)

SYSTEM = ("You write natural spoken Telugu conversations between a user and a helpful voice assistant. "
          "Write only in Telugu script (no English words, no transliteration), the way people speak, in short "
          "sentences. Answer with one JSON object and nothing else.")

# Words of the instruction that must never appear in a kept pair (prompt leakage).
LEAK_MARKERS = ("json", "telugu", "assistant", "conversation", "exchanges", "\"q\"", "\"a\"", "turns",
                "user:", "ప్రశ్న:", "జవాబు:", "సమాధానం:")


def load_topics(path: str | Path | None) -> tuple[Topic, ...]:
    """The bundled topics, or one topic per line of ``path`` (``key: what it is about`` or just the text)."""
    if path is None:
        return TOPICS
    from pipelines.sources.listing import read_lines

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--topics {p}: no such file (one topic per line, e.g. 'farming: crops and markets')")
    out = []
    for n, line in read_lines(p):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, about = line.partition(":")
        if not sep:
            key, about = f"topic{n}", line
        out.append(Topic(key.strip() or f"topic{n}", about.strip() or key.strip()))
    if not out:
        raise ValueError(f"--topics {p} holds no topics (one per line, e.g. 'farming: crops and markets')")
    return tuple(out)


@dataclass(frozen=True)
class Request:
    index: int
    topic: Topic
    style: Style
    exchanges: int
    seed: int  # passed to the endpoint

    def messages(self) -> list[dict]:
        n = self.exchanges
        shape = ", ".join(['{"q": "...", "a": "..."}'] * min(n, 2)) + (", ..." if n > 2 else "")
        user = (f"Topic: {self.topic.about}. Style: {self.style.how}. Write exactly {n} exchange"
                f"{'s' if n > 1 else ''}: each a user question (\"q\", 5-40 words) and the assistant's answer "
                f"(\"a\", 8-60 words). Reply as {{\"turns\": [{shape}]}}.")
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def request(index: int, seed: int, topics: tuple[Topic, ...]) -> Request:
    rng = random.Random(f"texts:{seed}:{index}")
    topic = rng.choice(topics)
    style = rng.choice(STYLES)
    n = rng.randint(*style.exchanges)
    return Request(index, topic, style, n, rng.randrange(2**31))
