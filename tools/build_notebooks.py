"""Build the instructor notebooks in solutions/ from their readable sources in notebook_src/.

A source is a Python file in "percent" format. Each cell starts with a marker line:

    # %% [markdown]                 a text cell; its lines start with "# "
    # %%                            an ordinary code cell (not graded, not locked)
    # %% [solution] ID              an exercise cell: the code between
                                    ### BEGIN SOLUTION / ### END SOLUTION is removed
                                    from the student version
    # %% [tests] ID points=N        an autograded test cell, locked; hidden parts go
                                    between ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS
    # %% [readonly] ID              a locked code cell students must not change

``notebook_src/NN_name.py`` becomes ``solutions/NN_name/NN_name.ipynb`` (one nbgrader
assignment per notebook). ``--check`` fails when a built notebook is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^# %%(?: \[(\w+)\])?(.*)$")
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def nbgrader_meta(kind: str, grade_id: str, points: int | None) -> dict:
    meta = {
        "grade": kind == "tests",
        "grade_id": grade_id,
        "locked": kind in ("tests", "readonly"),
        "schema_version": 3,
        "solution": kind == "solution",
        "task": False,
    }
    if kind == "tests":
        meta["points"] = points
    return meta


def parse(text: str, name: str) -> list[dict]:
    cells, current = [], None
    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            current = {"kind": m.group(1) or "code", "args": m.group(2).split(), "lines": []}
            cells.append(current)
        elif current is None:
            if line.strip():
                raise ValueError(f"{name}: text before the first '# %%' marker: {line!r}")
        else:
            current["lines"].append(line)
    return [build_cell(c, name, i) for i, c in enumerate(cells)]


def build_cell(cell: dict, name: str, index: int) -> dict:
    kind, args, lines = cell["kind"], cell["args"], cell["lines"]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if kind == "markdown":
        source = [re.sub(r"^# ?", "", ln) for ln in lines]
        return _cell("markdown", source, f"{name}-md{index}", None)
    if kind not in ("code", "solution", "tests", "readonly"):
        raise ValueError(f"{name}: unknown cell kind [{kind}]")
    meta = None
    cell_id = f"{name}-c{index}"
    if kind != "code":
        if not args:
            raise ValueError(f"{name}: a [{kind}] cell needs an id")
        points = None
        if kind == "tests":
            found = [a for a in args if a.startswith("points=")]
            if not found:
                raise ValueError(f"{name}: [tests] {args[0]} needs points=N")
            points = int(found[0].split("=")[1])
        meta = nbgrader_meta(kind, args[0], points)
        cell_id = args[0]
    return _cell("code", lines, cell_id, meta)


def _cell(cell_type: str, lines: list[str], cell_id: str, nbgrader: dict | None) -> dict:
    source = [ln + "\n" for ln in lines]
    if source:
        source[-1] = source[-1].rstrip("\n")
    cell = {
        "cell_type": cell_type,
        "id": re.sub(r"[^A-Za-z0-9_-]", "-", cell_id)[:64],
        "metadata": {"nbgrader": nbgrader} if nbgrader else {},
        "source": source,
    }
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def build(src: Path) -> tuple[Path, str]:
    name = src.stem
    notebook = {
        "cells": parse(src.read_text(), name),
        "metadata": {"kernelspec": KERNEL, "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    out = ROOT / "solutions" / name / f"{name}.ipynb"
    return out, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a notebook is out of date")
    parser.add_argument("sources", nargs="*", type=Path)
    args = parser.parse_args(argv)
    sources = args.sources or sorted((ROOT / "notebook_src").glob("[0-9]*.py"))
    stale = []
    for src in sources:
        out, text = build(src)
        if args.check:
            if not out.exists() or out.read_text() != text:
                stale.append(str(out.relative_to(ROOT)))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            print(f"wrote {out.relative_to(ROOT)}")
    if stale:
        print("out of date (run: python tools/build_notebooks.py):\n  " + "\n  ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
