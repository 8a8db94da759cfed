"""Grading results: one record per (student, notebook), the CSV and the summary.

Every submission's latest result is kept as ``OUT/results/NB/STUDENT.json``; a new
submission of one student replaces only that file. ``grades.csv`` and ``summary.md``
are rebuilt from all records after every run, so grading again gives the same files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .collect import Rejected
from .error_names import CELL_TIMEOUT, KERNEL_DIED, NO_PASS_SIGNAL, NOT_RUN
from .job_report import GRADED, CellScore, JobReport
from .templates import Template

HELD = "held: "  # the start of a held submission's status
NOT_GRADED = "not graded: "
METADATA_MISSING = "nbgrader metadata missing (cells copied into a new notebook?)"


@dataclass
class CellResult:
    id: str
    points: float
    max_points: float
    error: str | None = None


@dataclass
class Result:
    student: str
    notebook: str
    status: str  # "graded", "held: why" or "not graded: why"
    cells: list[CellResult] = field(default_factory=list)
    cell_errors: list[dict] = field(default_factory=list)  # errors outside graded cells
    flags: list[str] = field(default_factory=list)  # code worth a look by hand
    origin: str = ""
    sha256: str = ""
    settings: str = ""  # template fingerprint and limits the grade was made with
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # seconds per phase of the job
    held: list[str] = field(default_factory=list)  # why it is held (0 points until released)
    released: str = ""  # the hold an instructor released, if any
    sandboxed: bool = True  # the kernel ran in the sandbox
    lms_id: str = ""  # Canvas user id or Moodle participant id, from the file name
    lms: str = ""  # "canvas", "moodle" or ""

    @property
    def graded(self) -> bool:
        return self.status == GRADED

    @property
    def is_held(self) -> bool:
        return self.status.startswith(HELD)

    @property
    def awarded(self) -> float:
        """The points that count: none while held or not graded."""
        return self.points if self.graded else 0.0

    def cell_awarded(self, cell: CellResult) -> float:
        return cell.points if self.graded else 0.0

    def release(self) -> None:
        """An instructor looked and lets the grade count."""
        self.released, self.status = self.status.removeprefix(HELD), GRADED

    @property
    def points(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.cells)

    @classmethod
    def not_graded(cls, student, notebook, template: Template, why: str, **kw) -> Result:
        cells = [CellResult(c.id, 0.0, c.points) for c in template.grade_cells]
        return cls(student, notebook, NOT_GRADED + why, cells, **kw)

    @classmethod
    def held_ungraded(cls, student, notebook, template: Template, why: str, **kw) -> Result:
        """Held without a grade (nothing to release: the instructor acts first)."""
        cells = [CellResult(c.id, 0.0, c.points) for c in template.grade_cells]
        return cls(student, notebook, HELD + why, cells, held=[why], **kw)

    @classmethod
    def from_job(cls, student, notebook, template: Template, job: JobReport, **kw) -> Result:
        """Trusted scores from a job's report: points are clamped to the template's, and
        a grade cell missing from the report scores 0."""
        if not job.graded:
            return cls.not_graded(student, notebook, template, job.reason or "grading failed", **kw)
        reported = job.cells
        cells = []
        for cell in template.grade_cells:
            got = reported.get(cell.id) or CellScore()
            score = got.score
            points = (
                min(max(float(score), 0.0), cell.points) if isinstance(score, (int, float)) else 0.0
            )
            error = got.error if cell.id in reported else "missing from the graded notebook"
            cells.append(
                CellResult(cell.id, points, cell.points, error if points < cell.points else None)
            )
        timings = {k: round(v, 2) for k, v in job.timings.items()}
        held = list(dict.fromkeys([*kw.pop("held", []), *job.tampering]))
        return cls(
            student,
            notebook,
            HELD + "; ".join(held) if held else GRADED,
            cells,
            held=held,
            cell_errors=job.cell_errors[:50],
            timings=timings,
            **kw,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Result:
        data = json.loads(text)
        data["cells"] = [CellResult(**c) for c in data["cells"]]
        return cls(**data)


class ResultStore:
    """``OUT/results/NB/STUDENT.json``: the latest result of every submission."""

    def __init__(self, out: Path):
        self.folder = out / "results"

    def path(self, notebook: str, student: str) -> Path:
        return self.folder / notebook / f"{student}.json"

    def get(self, notebook: str, student: str) -> Result | None:
        path = self.path(notebook, student)
        return Result.from_json(path.read_text()) if path.is_file() else None

    def put(self, result: Result) -> None:
        path = self.path(result.notebook, result.student)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(result.to_json())
        tmp.replace(path)

    def all(self) -> list[Result]:
        return [Result.from_json(p.read_text()) for p in sorted(self.folder.glob("*/*.json"))]


def _num(x: float) -> str:
    return f"{x:g}"


def write_grades_csv(results: list[Result], path: Path) -> None:
    """student, notebook, exercise, points, max_points, status, message: one row per
    grade cell of every submission (a submission not graded gets 0 and says why)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "exercise", "points", "max_points", "status", "message"])
        for r in sorted(results, key=lambda r: (r.student, r.notebook)):
            for c in r.cells:
                w.writerow(
                    [
                        r.student,
                        r.notebook,
                        c.id,
                        _num(r.cell_awarded(c)),
                        _num(c.max_points),
                        r.status,
                        c.error or "",
                    ]
                )


def write_import_report(rows: list[tuple[str, str, str, str]], path: Path) -> None:
    """file, student, notebook, outcome: one row for every file of the last run."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "student", "notebook", "outcome"])
        w.writerows(sorted(rows))


def summary(results: list[Result], rejected: list[Rejected], top: int = 3) -> str:
    """Markdown: per notebook, pass rate and common failures of every exercise; what
    was not graded; files not attributed in the last run; code to look at by hand."""
    lines = ["# Grading summary", ""]
    for notebook in sorted({r.notebook for r in results}):
        rs = [r for r in results if r.notebook == notebook]
        graded = [r for r in rs if r.graded]
        held = [r for r in rs if r.is_held]
        lines += [
            f"## {notebook}",
            "",
            (
                f"{len(rs)} submissions, {len(graded)} graded, {len(held)} held, "
                f"{len(rs) - len(graded) - len(held)} not graded."
            ),
            "",
        ]
        unsandboxed = [r for r in rs if not r.sandboxed]
        if unsandboxed:
            lines += [
                (
                    f"**{len(unsandboxed)} graded WITHOUT the sandbox (--no-sandbox)**: their code "
                    "ran as the grading user, could read and change that user's files and use the "
                    "network."
                ),
                "",
            ]
        events = _grader_events(graded)
        if events:
            lines += [
                "Submissions with " + ", ".join(f"{what}: {n}" for what, n in events.items()) + ".",
                "",
            ]
        if graded:
            mean = sum(r.points for r in graded) / len(graded)
            lines += [
                f"Mean score of the graded: {mean:.2f} / {_num(graded[0].max_points)}.",
                "",
                "| exercise | points | passed | common failures |",
                "|---|---|---|---|",
            ]
            for i, cell in enumerate(graded[0].cells):
                cells = [r.cells[i] for r in graded if len(r.cells) > i]
                passed = sum(c.points >= c.max_points for c in cells)
                failures = Counter(c.error for c in cells if c.error)
                common = (
                    "; ".join(f"{n}x {_md(msg)}" for msg, n in failures.most_common(top)) or "-"
                )
                lines.append(
                    f"| {cell.id} | {_num(cell.max_points)} | {passed}/{len(cells)} "
                    f"({100 * passed / len(cells):.0f}%) | {common} |"
                )
            lines.append("")
        for r in rs:
            if not r.graded:
                lines.append(f"- **{r.student}**: {r.status} ({r.origin})")
            if r.is_held:
                lines.append(f"  - {_held_advice(r)}")
            if r.released:
                lines.append(
                    f"- **{r.student}**: released by the instructor after a hold ({r.released})"
                )
        for r in rs:
            if r.flags:
                lines.append(f"- review **{r.student}** by hand: {', '.join(r.flags)}")
        lines.append("")
    if rejected:
        lines += ["## Files not graded in the last run", ""]
        lines += [f"- `{x.origin}`: {x.reason}" for x in rejected]
        lines.append("")
    return "\n".join(lines)


def _held_advice(r: Result) -> str:
    if METADATA_MISSING in r.status:
        return (
            "its cells could not be matched to the release: copy the student's answers into the "
            "released notebook (notebooks/NB/NB.ipynb) and grade that file again"
        )
    return (
        f"0 points until released. Read the code; if it is harmless, "
        f"`python -m autograder release-held {r.student} {r.notebook}` lets its "
        f"{_num(r.points)}/{_num(r.max_points)} count"
    )


EVENTS = {
    "a cell timeout": (CELL_TIMEOUT,),
    "a kernel death": (KERNEL_DIED,),
    "cells not run": (NOT_RUN,),
    "unproven test cells": (NO_PASS_SIGNAL,),
    "memory errors": ("MemoryError", "can't allocate memory"),
}


def _grader_events(results: list[Result]) -> dict[str, int]:
    """How many submissions hit each limit (many timeouts: is --timeout too short?)."""
    counts = {}
    for what, needles in EVENTS.items():
        n = sum(
            any(
                any(x in (msg or "") for x in needles)
                for msg in [c.error for c in r.cells] + [e.get("error") for e in r.cell_errors]
            )
            for r in results
        )
        if n:
            counts[what] = n
    return counts


def _md(text: str, width: int = 160) -> str:
    text = text if len(text) <= width else text[: width - 3] + "..."
    return text.replace("|", "\\|").replace("\n", " ")
