"""A small client for any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp server, Ollama).

``requests`` (already a dependency) with one session per thread; the caller's thread pool gives the concurrency.
Connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff; any other HTTP error stops
the run with a sentence saying what to do. The API key comes from an environment variable and is never logged or
put in an error message."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass

KEY_ENVS = ("MATALU_LLM_API_KEY", "OPENAI_API_KEY")


class LLMError(RuntimeError):
    """The endpoint cannot be used (refused key, unknown model, unreachable after retries): one sentence."""


@dataclass
class LLMConfig:
    url: str
    model: str
    temperature: float = 0.9
    max_tokens: int = 1024
    timeout_s: float = 120.0
    retries: int = 4  # tries after the first, for connection errors, timeouts, 429 and 5xx
    backoff_s: float = 1.0  # first pause; doubles each retry (with jitter)

    @property
    def endpoint(self) -> str:
        u = self.url.rstrip("/")
        if u.endswith("/chat/completions"):
            return u
        if u.endswith("/v1"):
            return u + "/chat/completions"
        return u + "/v1/chat/completions"


@dataclass
class Completion:
    content: str
    finish_reason: str


def api_key() -> str | None:
    """The key from MATALU_LLM_API_KEY, else OPENAI_API_KEY (None: local servers that need none)."""
    for name in KEY_ENVS:
        v = os.environ.get(name)
        if v:
            return v
    return None


class ChatClient:
    def __init__(self, cfg: LLMConfig) -> None:
        if not cfg.url.startswith(("http://", "https://")):
            raise ValueError(f"--llm-url {cfg.url!r}: expected an http(s) URL such as http://127.0.0.1:8000/v1")
        self.cfg = cfg
        self._key = api_key()
        self._local = threading.local()
        self.retried = 0  # requests that needed another try (shown in the summary)
        self._lock = threading.Lock()

    def _session(self):
        import requests

        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            if self._key:
                s.headers["Authorization"] = f"Bearer {self._key}"
        return s

    def chat(self, messages: list[dict], seed: int) -> Completion:
        """One completion; raises :class:`LLMError` when the endpoint refuses or stays unreachable."""
        import requests

        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens, "seed": seed}
        rng = random.Random(seed)
        last = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                with self._lock:
                    self.retried += 1
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1) * (0.5 + rng.random()))
            try:
                r = self._session().post(self.cfg.endpoint, json=body, timeout=self.cfg.timeout_s)
            except requests.RequestException as e:
                last = f"{type(e).__name__}"
                continue
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}"
                continue
            if r.status_code in (401, 403):
                raise LLMError(f"{self.cfg.endpoint} refused the request (HTTP {r.status_code}); set the API key in "
                               f"{KEY_ENVS[0]} (or {KEY_ENVS[1]})")
            if r.status_code == 404:
                raise LLMError(f"{self.cfg.endpoint} answered 404: check --llm-url (the server's OpenAI-compatible base, "
                               f"e.g. http://HOST:8000/v1) and --model {self.cfg.model!r}")
            if r.status_code >= 400:
                raise LLMError(f"{self.cfg.endpoint} answered HTTP {r.status_code} ({r.text[:200].strip()}); check "
                               f"--model {self.cfg.model!r} and the server's log")
            try:
                choice = r.json()["choices"][0]
                return Completion(str(choice["message"]["content"] or ""), str(choice.get("finish_reason") or ""))
            except (ValueError, KeyError, IndexError, TypeError):
                return Completion(r.text, "unparsable_response")  # judged (and counted) as malformed by the checks
        raise LLMError(f"{self.cfg.endpoint} did not answer after {self.cfg.retries + 1} tries (last: {last}); check "
                       "that the server is up, or lower --concurrency")
