"""The student notebooks in ``notebooks/``: write them, or check they are up to date.

Both run ``nbgrader generate_assignment`` in a private course folder (see
:mod:`autograder.templates`), so neither touches the course gradebook. The check
compares what matters to a student: every cell's type, id, source, metadata and
outputs, and the kernelspec. It ignores execution counts and the rest of the
notebook metadata, which tools rewrite.
"""

from __future__ import annotations

import json
import shutil

from .course import Course
from .templates import template


def write_release(course: Course, notebooks: list[str] | None, log=print) -> None:
    for nb in _names(course, notebooks):
        t = template(course, nb, course.template_cache)
        dest = course.student_notebook(nb)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(t.release_notebook.parent, dest.parent, dirs_exist_ok=True)
        log(f"wrote {dest.relative_to(course.root)}")


def check_release(course: Course, notebooks: list[str] | None) -> dict[str, list[str]]:
    """Differences between each committed student notebook and a fresh release."""
    out = {}
    for nb in _names(course, notebooks):
        committed = course.student_notebook(nb)
        if not committed.is_file():
            out[nb] = [f"{committed.relative_to(course.root)} is missing"]
            continue
        fresh = template(course, nb, course.template_cache).release_notebook
        out[nb] = differences(json.loads(fresh.read_text()), json.loads(committed.read_text()))
    return out


def _names(course: Course, notebooks: list[str] | None) -> list[str]:
    return [course.check_notebook(n) for n in notebooks] if notebooks else course.notebooks()


def _cell(cell: dict) -> dict:
    keep = {k: cell.get(k) for k in ("cell_type", "id", "metadata", "outputs", "attachments")}
    source = cell.get("source", "")
    keep["source"] = "".join(source) if isinstance(source, list) else source
    return keep


def differences(fresh: dict, committed: dict, limit: int = 10) -> list[str]:
    """What differs, in words, cell by cell (at most ``limit`` lines)."""
    diffs = []
    if fresh.get("metadata", {}).get("kernelspec") != committed.get("metadata", {}).get(
        "kernelspec"
    ):
        diffs.append("kernelspec differs")
    a, b = [_cell(c) for c in fresh["cells"]], [_cell(c) for c in committed.get("cells", [])]
    if len(a) != len(b):
        diffs.append(f"{len(b)} cells, a fresh release has {len(a)}")
    for i, (x, y) in enumerate(zip(a, b)):
        for key in x:
            if x[key] != y[key]:
                diffs.append(f"cell {i + 1} ({x['id']}): {key} differs")
    return diffs[:limit]
