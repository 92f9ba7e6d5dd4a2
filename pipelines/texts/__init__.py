"""Telugu conversation texts from an LLM (``matalu texts generate``): prompts, the OpenAI-compatible client, the
checks every generated pair must pass, and the resumable generator (docs/DESIGN.md, synthetic source)."""
