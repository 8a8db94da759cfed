"""Writes to the course's nbgrader gradebook (SQLite), done by the batch process only.

Jobs grade against private copies of a template gradebook; the batch then copies
each result in here, one at a time, so concurrent jobs never write the same file.
"""

from __future__ import annotations

from pathlib import Path

from .course import nbgrader_path, quiet_nbgrader, skip_slow_imports
from .results import Result
from .templates import Template


def _open(db: Path):
    skip_slow_imports()
    from nbgrader.api import Gradebook

    quiet_nbgrader()
    db.parent.mkdir(parents=True, exist_ok=True)
    with nbgrader_path():  # a new gradebook asks the `alembic` command for its version
        return Gradebook(f"sqlite:///{db}")


def install_assignment(db: Path, template: Template) -> None:
    """Make the assignment and its cells in the course gradebook match the template."""
    skip_slow_imports()
    from nbgrader.api import Gradebook

    name = template.notebook
    with Gradebook(f"sqlite:///{template.gradebook}") as src, _open(db) as dst:
        assignment = src.find_assignment(name)
        dst.update_or_create_assignment(name)
        for nb in assignment.notebooks:
            dst.update_or_create_notebook(nb.name, name, kernelspec=nb.kernelspec)
            for c in nb.grade_cells:
                dst.update_or_create_grade_cell(
                    c.name, nb.name, name, max_score=c.max_score, cell_type=c.cell_type
                )
            for c in nb.solution_cells:
                dst.update_or_create_solution_cell(c.name, nb.name, name)
            for c in nb.task_cells:
                dst.update_or_create_task_cell(
                    c.name, nb.name, name, max_score=c.max_score, cell_type=c.cell_type
                )
            for c in nb.source_cells:
                dst.update_or_create_source_cell(
                    c.name,
                    nb.name,
                    name,
                    cell_type=c.cell_type,
                    locked=c.locked,
                    source=c.source,
                    checksum=c.checksum,
                )


def record(db: Path, result: Result, timestamp: str | None = None) -> None:
    """Store a result as the student's submission, replacing an earlier one.

    A submission that was not graded, or is held, scores 0 and is marked for manual grading."""
    with _open(db) as gb:
        gb.update_or_create_student(result.student)
        when = {"timestamp": timestamp} if timestamp else {}
        gb.update_or_create_submission(result.notebook, result.student, **when)
        submitted = gb.find_submission_notebook(result.notebook, result.notebook, result.student)
        points = {c.id: result.cell_awarded(c) for c in result.cells}
        for grade in submitted.grades:
            grade.auto_score = points.get(grade.name, 0.0)
            grade.needs_manual_grade = not result.graded
        gb.db.commit()
