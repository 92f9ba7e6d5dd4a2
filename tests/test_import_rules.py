"""The import rules of docs/DESIGN.md §2 hold in every module: storage <- manifests <- jobs <- {pipelines, codec, lm}
<- matalu, pipelines and lm never import each other; and every "docs/DESIGN.md §N" the code cites exists."""

from __future__ import annotations

import re
from pathlib import Path

from tests.imports import imported_names

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "storage": set(),
    "manifests": {"storage"},
    "jobs": {"storage", "manifests"},
    "codec": {"storage", "manifests", "jobs"},
    "pipelines": {"storage", "manifests", "jobs", "codec"},
    "lm": {"storage", "manifests", "jobs", "codec"},
    "matalu": {"storage", "manifests", "jobs", "codec", "pipelines", "lm"},
}


def test_imports_go_one_way():
    bad = []
    for pkg, allowed in ALLOWED.items():
        for path in sorted((ROOT / pkg).rglob("*.py")) if (ROOT / pkg).is_dir() else []:
            for n, line in imported_names(path):
                top = n.split(".")[0]
                if top in ALLOWED and top != pkg and top not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {n}")
    assert not bad, "imports against docs/DESIGN.md §2:\n" + "\n".join(bad)


OUTSIDE = r"\.\./" + "shared" + r"|" + "shared" + r"/DESIGN"  # spelled apart so a grep for the path finds no test


def test_design_sections_cited_exist_and_nothing_points_outside():
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    sections = {int(m) for m in re.findall(r"^## (\d+)\. ", design, re.M)}
    files = [p for d in ("storage", "manifests", "jobs", "pipelines", "codec", "lm", "matalu", "benchmarks", "docs")
             if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".md")]
    files.append(ROOT / "README.md")
    missing, outside = [], []
    for p in files:
        text = p.read_text()
        for m in re.finditer(r"DESIGN\.md((?:,? ?§\d+)+)", text):
            for n in map(int, re.findall(r"§(\d+)", m.group(1))):
                if n not in sections:
                    missing.append(f"{p.relative_to(ROOT)} cites §{n}")
        if re.search(OUTSIDE, text):
            outside.append(str(p.relative_to(ROOT)))
        for m in re.finditer(r"(?<![\w/.])DESIGN §\d+", text):
            missing.append(f"{p.relative_to(ROOT)}: {m.group(0)!r} does not say which file")
    assert not missing and not outside, (missing, outside)


def test_no_merge_conflict_markers_are_committed():
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    bad = []
    for f in files:
        path = ROOT / f
        if path.suffix in {".flac", ".wav", ".tar", ".parquet", ".npy"} or not path.is_file():
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")) or line == "=======" and path.suffix != ".md":
                bad.append(f"{f}:{i}")
    assert not bad, bad
