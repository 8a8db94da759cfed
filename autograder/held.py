"""Held submissions: their code touched the machinery grading relies on, or their cells
could not be matched to the release. They score 0 until an instructor releases them::

    python -m autograder release-held STUDENT NOTEBOOK [--out DIR] [--gradebook DB]

Releasing makes the stored grade count: ``grades.csv``, ``summary.md`` and the course
gradebook are rewritten, and the feedback kept back during the hold is handed back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import gradebook as course_gradebook
from .course import GradingError
from .lms_export import write_exports
from .results import METADATA_MISSING, ResultStore, summary, write_grades_csv


def held_feedback(out: Path, student: str, notebook: str) -> Path:
    """Where the feedback of a held submission waits for its release."""
    return out / "held" / student / f"{notebook}.html"


def release_held(out: Path, student: str, notebook: str, gradebook: Path | None) -> str:
    """Let a held grade count; returns what was released. GradingError if it cannot be."""
    store = ResultStore(out)
    result = store.get(notebook, student)
    if result is None:
        raise GradingError(f"no result for {student} {notebook} in {out / 'results'}")
    if not result.is_held:
        raise GradingError(f"{student} {notebook} is not held (its status: {result.status})")
    if METADATA_MISSING in result.status:
        raise GradingError(
            f"{student} {notebook} has no grade to release ({result.status}): copy the "
            "answers into the released notebook and grade that file again"
        )
    reason = result.status
    result.release()
    store.put(result)
    if gradebook:
        course_gradebook.record(gradebook, result)
    kept = held_feedback(out, student, notebook)
    if kept.is_file():
        dest = out / "feedback" / student / f"{notebook}.html"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(kept, dest)
    results = store.all()
    write_grades_csv(results, out / "grades.csv")
    write_exports(results, out)
    (out / "summary.md").write_text(summary(results, []))
    return f"{reason} -> released: {result.points:g}/{result.max_points:g}"
