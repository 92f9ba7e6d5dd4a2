"""`matalu texts generate` against a fake OpenAI-compatible server on 127.0.0.1: good replies are kept, every other
kind (malformed, English, duplicate, near-duplicate, truncated, prompt leak) is counted under its reason; a server
error is retried; an interrupted run resumes without writing a duplicate; the API key is sent but never shown."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.sources.synthetic import load_pairs
from pipelines.texts import prompts
from pipelines.texts.generate import GenerateConfig, generate
from pipelines.texts.llm import LLMConfig
from tests.llmserver import FakeLLM

PAIRS = load_pairs()  # the bundled Telugu pairs: distinct good answers
KINDS = ["good", "malformed", "good", "english", "duplicate", "good", "truncated", "near_duplicate", "good", "leak",
         "good", "good", "error_once", "good", "good"] + ["good"] * 40


def good(k: int) -> str:
    return json.dumps({"turns": [{"q": PAIRS[k]["q"], "a": PAIRS[k]["a"]}]}, ensure_ascii=False)


def script(seed: int, kinds: list[str]):
    """answer(body): the reply for request i of a run with ``seed`` is kinds[i]; i found from the body's seed."""
    index = {prompts.request(i, seed, prompts.TOPICS).seed: i for i in range(len(kinds))}
    errored: set[int] = set()

    def answer(body: dict):
        i = index[body["seed"]]
        kind = kinds[i]
        if kind == "good" or (kind == "error_once" and i in errored):
            return 200, good(i), "stop"
        if kind == "error_once":
            errored.add(i)
            return 503, "", ""
        if kind == "malformed":
            return 200, 'Sure! {"turns": [{"q": "ఇది", "a": ', "stop"
        if kind == "english":
            return 200, json.dumps({"turns": [{"q": "What is the weather like today?", "a": "It is sunny and warm."}]}), "stop"
        if kind == "duplicate":  # the same texts as request 0, other punctuation and spacing
            return 200, json.dumps({"turns": [{"q": PAIRS[0]["q"] + " ", "a": PAIRS[0]["a"].replace(",", "")}]},
                                   ensure_ascii=False), "stop"
        if kind == "near_duplicate":  # request 5's texts with one word more
            return 200, json.dumps({"turns": [{"q": PAIRS[5]["q"], "a": PAIRS[5]["a"] + " అంతే."}]},
                                   ensure_ascii=False), "stop"
        if kind == "truncated":
            return 200, good(i)[:40], "length"
        if kind == "leak":
            return 200, json.dumps({"turns": [{"q": PAIRS[i]["q"], "a": "ఇదిగో మీ JSON జవాబు: " + PAIRS[i]["a"]}]},
                                   ensure_ascii=False), "stop"
        if kind == "refuse":
            return 401, "", ""
        raise AssertionError(kind)

    return answer


def cfg(out: Path, url: str, n: int, **kw) -> GenerateConfig:
    return GenerateConfig(out=str(out), n=n, seed=3, concurrency=4,
                          llm=LLMConfig(url=url, model="fake-te", retries=2, backoff_s=0.01), **kw)


def lines(p: Path) -> list[dict]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]


def test_keeps_good_counts_every_other_kind(tmp_path):
    with FakeLLM(script(3, KINDS)) as llm:
        res = generate(cfg(tmp_path / "pairs.jsonl", llm.url, n=9))
    rows = lines(tmp_path / "pairs.jsonl")
    # requests 0..14 hold 9 good replies (request 12 only after a retried 503)
    assert res.complete and res.kept == 9 and res.requests == 15
    assert [r["request"] for r in rows] == [0, 2, 5, 8, 10, 11, 12, 13, 14]
    assert [r["a"] for r in rows] == [PAIRS[i]["a"] for i in (0, 2, 5, 8, 10, 11, 12, 13, 14)]
    assert dict(res.rejected) == {"malformed": 1, "not_telugu": 1, "duplicate": 1, "truncated": 1,
                                  "near_duplicate": 1, "prompt_leak": 1}
    assert res.retried == 1
    assert len({r["id"] for r in rows}) == 9
    # the synthetic source reads the file as it is
    assert [p["a"] for p in load_pairs(tmp_path / "pairs.jsonl")] == [r["a"] for r in rows]


def test_resume_after_interruption_writes_no_duplicate(tmp_path):
    out = tmp_path / "pairs.jsonl"
    stopped = KINDS[:8] + ["refuse"] * 50  # the endpoint starts refusing at request 8: the run stops with an error
    import pytest

    from pipelines.texts.llm import LLMError

    with FakeLLM(script(3, stopped)) as llm, pytest.raises(LLMError, match="refused"):
        generate(cfg(out, llm.url, n=9))
    first = lines(out)
    assert [r["request"] for r in first] == [0, 2, 5]
    with open(out, "a", encoding="utf-8") as f:  # a write torn by the interruption
        f.write('{"id": "gbroken", "q": "ఇ')
    with FakeLLM(script(3, KINDS)) as llm:
        res = generate(cfg(out, llm.url, n=9))
    rows = lines(out)
    assert rows[:3] == first and res.resumed == 3 and res.kept == 9
    assert [r["request"] for r in rows] == [0, 2, 5, 8, 10, 11, 12, 13, 14]  # requests 6.. were asked again
    assert len({r["id"] for r in rows}) == len({r["a"] for r in rows}) == 9
    with FakeLLM(script(3, KINDS)) as llm:  # complete: a rerun asks nothing
        again = generate(cfg(out, llm.url, n=9))
        assert again.requests == 0 and not llm.requests
    assert lines(out) == rows


def test_cli_sends_the_key_and_never_shows_it(tmp_path, monkeypatch, capsys):
    from matalu.cli import main

    secret = "sk-FAKEsecret0123456789"
    monkeypatch.setenv("MATALU_LLM_API_KEY", secret)
    with FakeLLM(script(3, KINDS)) as llm:
        rc = main(["texts", "generate", "--llm-url", llm.url, "--model", "fake-te", "--n", "4", "--seed", "3",
                   "-o", str(tmp_path / "p.jsonl"), "--no-progress"])
        auth = {h.get("Authorization") for _, h in llm.requests}
    out = capsys.readouterr()
    assert rc == 0 and auth == {f"Bearer {secret}"}
    assert "malformed" in out.out and "kept" in out.out
    assert secret not in out.out + out.err + (tmp_path / "p.jsonl").read_text()
    with FakeLLM(script(3, ["refuse"] * 60)) as llm:
        rc = main(["texts", "generate", "--llm-url", llm.url, "--model", "m", "--n", "9", "--seed", "3",
                   "-o", str(tmp_path / "p.jsonl"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "MATALU_LLM_API_KEY" in err and secret not in err
