"""Grades in the import formats of Canvas and Moodle, written next to ``grades.csv``.

- ``canvas_grades.csv``, for Canvas's Gradebook > Import: the columns ``Student``, ``ID``
  (the Canvas user id from the file name), ``SIS User ID``, ``SIS Login ID``,
  ``Section``, then one column per notebook with its points; the second row holds
  ``Points Possible``. A column whose name is not an assignment yet becomes a new one.
- ``moodle_grades.csv``, for Moodle's Grades > Import > CSV file: ``User ID`` (the
  participant id from the file name; map it to "userid"), then one column per notebook.

Only submissions whose file name carried that LMS's id are listed; a held or
ungraded submission scores 0 (as in ``grades.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from .results import Result

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_ID_COLUMN = "User ID"


def _table(results: list[Result], lms: str) -> tuple[list[str], dict[str, dict], dict[str, float]]:
    """Notebooks, {lms id: {"student": .., notebook: points}}, {notebook: max points}."""
    mine = [r for r in results if r.lms == lms and r.lms_id]
    notebooks = sorted({r.notebook for r in mine})
    rows: dict[str, dict] = {}
    possible: dict[str, float] = {}
    for r in mine:
        rows.setdefault(r.lms_id, {"student": r.student})[r.notebook] = r.awarded
        possible[r.notebook] = r.max_points
    return notebooks, rows, possible


def write_canvas(results: list[Result], path: Path) -> None:
    notebooks, rows, possible = _table(results, "canvas")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CANVAS_COLUMNS + notebooks)
        w.writerow(["Points Possible", "", "", "", ""] + [f"{possible[nb]:g}" for nb in notebooks])
        for uid, row in sorted(rows.items()):
            w.writerow([row["student"], uid, "", "", ""] + [_cell(row, nb) for nb in notebooks])


def write_moodle(results: list[Result], path: Path) -> None:
    notebooks, rows, _ = _table(results, "moodle")
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([MOODLE_ID_COLUMN] + notebooks)
        for pid, row in sorted(rows.items()):
            w.writerow([pid] + [_cell(row, nb) for nb in notebooks])


def _cell(row: dict, notebook: str) -> str:
    return f"{row[notebook]:g}" if notebook in row else ""


def write_exports(results: list[Result], out: Path) -> list[Path]:
    """Both files in ``out``; returns their paths."""
    paths = [out / "canvas_grades.csv", out / "moodle_grades.csv"]
    write_canvas(results, paths[0])
    write_moodle(results, paths[1])
    return paths
