"""The course's own notebooks, graded: the instructor version must get full marks and
the unmodified student version zero on every exercise, without a crash.

This is what CI runs for every notebook: it catches a test that fails on the
reference solution, a test that passes on the stub, a hidden test that depends on
state, and a notebook that does not survive grading.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .batch import Options, grade
from .course import Course
from .results import Result

INSTRUCTOR, STUDENT = "instructor", "student"


def selfcheck(
    course: Course, notebooks: list[str] | None, options: Options, log=print
) -> dict[str, list[str]]:
    """Problems found, by notebook (an empty list: the notebook is fine)."""
    notebooks = [course.check_notebook(n) for n in notebooks] if notebooks else course.notebooks()
    problems = {
        nb: [
            (
                f"no student notebook {course.student_notebook(nb).relative_to(course.root)}: "
                f"run `python -m autograder release {nb}`"
            )
        ]
        for nb in notebooks
        if not course.student_notebook(nb).is_file()
    }
    ready = [nb for nb in notebooks if nb not in problems]
    work = Path(tempfile.mkdtemp(prefix="flowlib-selfcheck-", dir=options.work_dir))
    try:
        subs = work / "submissions"
        for nb in ready:
            for who, path in (
                (INSTRUCTOR, course.instructor_notebook(nb)),
                (STUDENT, course.student_notebook(nb)),
            ):
                (subs / who).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, subs / who / f"{nb}.ipynb")
        if ready:
            report = grade(
                course, [subs], work / "out", options, notebooks=ready, gradebook=None, log=log
            )
            found = {(r.student, r.notebook): r for r in report.results}
            for nb in ready:
                problems[nb] = _problems(found.get((INSTRUCTOR, nb)), True) + _problems(
                    found.get((STUDENT, nb)), False
                )
        return {nb: problems[nb] for nb in notebooks}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _problems(result: Result | None, full: bool) -> list[str]:
    who = "instructor version" if full else "student version"
    if result is None:
        return [f"{who}: no result"]
    if not result.graded:
        return [f"{who}: {result.status}"]
    problems = []
    for c in result.cells:
        if full and c.points < c.max_points:
            problems.append(f"{who}: {c.id} scored {c.points:g}/{c.max_points:g}: {c.error}")
        if not full and c.points > 0:
            problems.append(
                f"{who}: {c.id} scored {c.points:g}/{c.max_points:g}, expected 0: the test "
                f"passes on the unmodified release"
            )
    if not result.cells:
        problems.append(f"{who}: the notebook has no graded cells")
    return problems
