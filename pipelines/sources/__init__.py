"""Corpus recipes, one module per source (docs/DESIGN.md §6): ``download(target, **options)`` and
``prepare(downloaded, **options) -> Iterable[Recording | Reject]``, plus ``NAME`` and ``INFO``."""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = {
    "synthetic": "pipelines.sources.synthetic",
    "manifest": "pipelines.sources.manifest",
    "slr66": "pipelines.sources.slr66",
    "indictts": "pipelines.sources.indictts",
    "commonvoice": "pipelines.sources.commonvoice",
    "kathbath": "pipelines.sources.kathbath",
    "mucs": "pipelines.sources.mucs",
    "indicvoices": "pipelines.sources.indicvoices",
    "podcasts": "pipelines.sources.podcasts",
}


def names() -> list[str]:
    return sorted(_MODULES)


def get(name: str) -> ModuleType:
    if name not in _MODULES:
        raise KeyError(f"unknown source {name!r}; known sources: {', '.join(names())}")
    return importlib.import_module(_MODULES[name])
