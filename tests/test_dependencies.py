"""pyproject.toml declares what the code imports: every third-party module imported by the packages is a runtime
dependency (or, for an import only some commands make, a named extra); tests and benchmarks may use the dev extra."""

from __future__ import annotations

import functools
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.imports import imported_names

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("storage", "manifests", "jobs", "pipelines", "codec", "lm", "matalu")
# imports only some commands make, and the extra that brings them (the command names it when it is missing)
OPTIONAL = {"lhotse": "lhotse", "transformers": "encodec"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(specs: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~;\[]", s, maxsplit=1)[0]) for s in specs}


def _imports(paths) -> dict[str, str]:
    """Third-party import names (``pyannote.core`` for namespace packages, else the top level) -> one file using it."""
    dirs = [ROOT / d for d in (*PACKAGES, "tests", "benchmarks") if (ROOT / d).is_dir()]
    local = {p.stem for d in dirs for p in d.rglob("*.py")} | {d.name for d in dirs}
    out: dict[str, str] = {}
    for path in paths:
        for n, _line in imported_names(path):
            top = n.split(".")[0]
            if top in sys.stdlib_module_names or top in local or top == "__future__":
                continue
            key = ".".join(n.split(".")[:2]) if top == "pyannote" else top
            out.setdefault(key, str(path.relative_to(ROOT)))
    return out


@functools.cache
def _installed() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    if module.startswith("pyannote."):
        return {_norm(module)}
    return {_norm(d) for d in _installed().get(module, [module])}


def test_every_import_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"])
    extras = {k: _declared(v) for k, v in project["optional-dependencies"].items()}
    missing = []
    code = [p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")]
    for mod, where in sorted(_imports(code).items()):
        dists = _distributions(mod)
        if dists & runtime:
            continue
        extra = OPTIONAL.get(mod)
        if extra is None or not dists & extras[extra]:
            missing.append(f"{mod} ({where}): not a runtime dependency" + (f" nor in the {extra!r} extra" if extra else ""))
    dev_ok = runtime | extras["dev"]
    support = list((ROOT / "tests").rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py"))
    for mod, where in sorted(_imports(support).items()):
        if not _distributions(mod) & dev_ok:
            missing.append(f"{mod} ({where}): neither a runtime dependency nor in the dev extra")
    assert not missing, "declare these in pyproject.toml:\n" + "\n".join(missing)


def test_runtime_and_dev_apart():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _declared(project["dependencies"])
    assert not runtime & {"pytest", "pytest-timeout", "moto", "ruff", "lhotse", "webdataset"}
    assert {"pytest", "moto", "ruff", "lhotse"} <= _declared(project["optional-dependencies"]["dev"])
    assert _declared(project["optional-dependencies"]["lhotse"]) == {"lhotse"}
