"""``matalu texts generate``: N checked Telugu conversations from an LLM into a JSONL the synthetic source reads.

Each output line is one conversation::

    {"id": "g…", "q": first question, "a": first answer, "turns": [{"q", "a"}, ...], "topic", "style",
     "model", "request": i}

Requests run ``concurrency`` at a time and are judged in request order, so a deterministic server gives the same
file. The run is resumable: lines already in the output are kept, counted toward ``n`` and fed to the duplicate
check, a torn last line (an interrupted write) is cut off, and requests start after the last kept line's
``request``. Each kept line is appended and flushed at once."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pipelines.texts import prompts
from pipelines.texts.checks import CheckConfig, Deduper, Rejected, check_texts, parse
from pipelines.texts.llm import ChatClient, LLMConfig


@dataclass
class GenerateConfig:
    out: str
    llm: LLMConfig
    n: int = 10000
    seed: int = 0
    concurrency: int = 8
    topics: str | None = None
    max_requests: int | None = None  # default: 3 * n + 100 requests in all before giving up
    checks: CheckConfig = field(default_factory=CheckConfig)


@dataclass
class GenerateResult:
    kept: int  # lines in the output now
    resumed: int  # of those, lines that were there before this run
    requests: int  # requests made by this run
    rejected: Counter  # reason -> count (this run)
    retried: int
    complete: bool  # kept >= n

    def rows(self) -> list[tuple[str, int]]:
        return [("kept (in the file)", self.kept), ("  of which from before", self.resumed),
                ("requests this run", self.requests)] + [(f"rejected: {k}", v) for k, v in sorted(self.rejected.items())]


def read_existing(path: Path) -> list[dict]:
    """The conversations already in ``path``; a torn last line (no newline, not JSON) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    good_end = 0
    rows = []
    for raw in data.splitlines(keepends=True):
        try:
            d = json.loads(raw)
            ok = raw.endswith(b"\n") and isinstance(d, dict) and isinstance(d.get("turns"), list)
        except ValueError:
            ok = False
        if not ok:
            if good_end + len(raw) == len(data):  # only the last line may be torn
                break
            raise ValueError(f"{path}: line {len(rows) + 1} is not a generated conversation; move the file aside or "
                             "choose another -o")
        rows.append(d)
        good_end += len(raw)
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def conversation_id(exchanges: list[dict]) -> str:
    return "g" + hashlib.sha256(json.dumps(exchanges, ensure_ascii=False).encode()).hexdigest()[:12]


def generate(cfg: GenerateConfig, *, progress: Callable[[int, Counter], None] | None = None) -> GenerateResult:
    if cfg.n < 1:
        raise ValueError("--n must be at least 1")
    if cfg.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    topics = prompts.load_topics(cfg.topics)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = read_existing(out)
    dedup = Deduper(cfg.checks.near_dup_jaccard)
    for row in existing:
        try:
            dedup.check(row["turns"])
        except Rejected:
            pass  # a file from an older run may hold near-duplicates; they stay, later ones are checked against them
    kept = len(existing)
    start = max((int(r.get("request", -1)) for r in existing), default=-1) + 1
    limit = start + (cfg.max_requests if cfg.max_requests is not None else 3 * cfg.n + 100)
    rejected: Counter = Counter()
    client = ChatClient(cfg.llm)
    made = 0
    if progress:
        progress(kept, rejected)
    if kept >= cfg.n:
        return GenerateResult(kept, len(existing), 0, rejected, 0, True)

    def ask(req: prompts.Request):
        return req, client.chat(req.messages(), req.seed)

    pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="llm")
    with open(out, "a", encoding="utf-8") as f:
        pending: deque[Future] = deque()
        nxt = start
        try:
            while kept < cfg.n and (pending or nxt < limit):
                while len(pending) < 2 * cfg.concurrency and nxt < limit and kept + len(pending) < cfg.n + cfg.concurrency:
                    pending.append(pool.submit(ask, prompts.request(nxt, cfg.seed, topics)))
                    nxt += 1
                req, comp = pending.popleft().result()
                made += 1
                try:
                    exchanges = parse(comp.content, comp.finish_reason)
                    check_texts(exchanges, cfg.checks)
                    dedup.check(exchanges)
                except Rejected as r:
                    rejected[r.reason] += 1
                else:
                    row = {"id": conversation_id(exchanges), "q": exchanges[0]["q"], "a": exchanges[0]["a"],
                           "turns": exchanges, "topic": req.topic.key, "style": req.style.key, "model": cfg.llm.model,
                           "request": req.index}
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    f.flush()
                    kept += 1
                    if kept % 100 == 0:
                        os.fsync(f.fileno())
                if progress:
                    progress(kept, rejected)
        finally:  # enough kept, or a fatal error: requests not yet sent are dropped, none is waited for
            pool.shutdown(wait=False, cancel_futures=True)
    return GenerateResult(kept, len(existing), made, rejected, client.retried, kept >= cfg.n)
