"""The import statements of a Python file, for the tests that check what the code imports."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator


def imported_names(path: Path) -> Iterator[tuple[str, int]]:
    """``(module name, line)`` for every absolute import in ``path`` (``from x.y import z`` gives ``x.y``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
