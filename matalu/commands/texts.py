"""`matalu texts generate`: Telugu conversations from an OpenAI-compatible LLM endpoint (pipelines/texts)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("texts", help="Telugu conversation texts for the synthetic source")
    ss = p.add_subparsers(dest="tcmd", required=True)
    g = ss.add_parser("generate", help="generate checked Q/A conversations with an LLM (OpenAI-compatible endpoint)")
    g.add_argument("--llm-url", required=True, help="the endpoint's base, e.g. http://127.0.0.1:8000/v1 (vLLM, "
                   "llama.cpp server, Ollama); the API key, if any, comes from MATALU_LLM_API_KEY or OPENAI_API_KEY")
    g.add_argument("--model", required=True, help="the model name the server knows")
    g.add_argument("--n", type=int, default=10000, help="conversations wanted in the output (default 10000)")
    g.add_argument("-o", "--out", required=True, help="output JSONL; an existing file is resumed (its lines count)")
    g.add_argument("--topics", help="your topics, one per line ('farming: crops and markets'); default: bundled list")
    g.add_argument("--seed", type=int, default=0, help="seed of the topic/style draws and the request seeds")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    g.add_argument("--max-requests", type=int, help="give up after this many requests (default 3*n+100)")
    g.add_argument("--max-tokens", type=int, default=1024, help="completion token limit per request")
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--retries", type=int, default=4, help="tries after the first for errors and 429/5xx answers")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from pipelines.texts.generate import GenerateConfig, generate
    from pipelines.texts.llm import LLMConfig, LLMError

    cfg = GenerateConfig(out=args.out, n=args.n, seed=args.seed, concurrency=args.concurrency, topics=args.topics,
                         max_requests=args.max_requests,
                         llm=LLMConfig(url=args.llm_url, model=args.model, max_tokens=args.max_tokens,
                                       temperature=args.temperature, retries=args.retries))
    show = not args.no_progress and sys.stderr.isatty()
    console = Console(stderr=True)
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]kept"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                       TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        task = bar.add_task("", total=cfg.n)

        def progress(kept, rejected):
            bar.update(task, completed=kept, description=f"{sum(rejected.values())} rejected")
    else:
        bar, progress = None, None
    try:
        if bar:
            with bar:
                res = generate(cfg, progress=progress)
        else:
            res = generate(cfg)
    except LLMError as e:
        print(f"matalu texts: error: {e} (the lines kept so far stay in {args.out}; rerun to resume)", file=sys.stderr)
        return 2
    t = Table(title=f"matalu texts generate -> {args.out}")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k, v in res.rows():
        t.add_row(k, str(v))
    Console().print(t)
    if not res.complete:
        print(f"stopped after {res.requests} requests with {res.kept} of {cfg.n} conversations kept; rerun (it resumes) "
              "or raise --max-requests", file=sys.stderr)
        return 1
    return 0
