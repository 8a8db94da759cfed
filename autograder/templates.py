"""The released assignment of one notebook: gradebook, student version and grade cells.

``nbgrader generate_assignment`` is run once per notebook in a private course folder
(never in the course itself, so ``notebooks/`` and the course gradebook are left
alone). What it leaves behind is the *template* every grading job starts from:

- ``gradebook.db``: the assignment, its grade cells with their points and the
  locked cells' sources (hidden tests included; solutions are already stubs),
- ``release/NB/NB.ipynb``: the student version,
- ``source/NB/``: the instructor's folder without notebooks (data files that
  autograde copies next to each submission).

Templates are cached under a fingerprint of the instructor folder, the nbgrader
configuration and the nbgrader version, so a batch builds each one once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .course import (
    Course,
    GradingError,
    course_config,
    nbgrader_path,
    quiet_nbgrader,
    skip_slow_imports,
)


@dataclass(frozen=True)
class GradeCell:
    """An autograded test cell: its nbgrader ``grade_id`` and its points."""

    id: str
    points: float


@dataclass(frozen=True)
class Template:
    notebook: str
    directory: Path
    grade_cells: tuple[GradeCell, ...]
    fingerprint: str

    @property
    def gradebook(self) -> Path:
        return self.directory / "gradebook.db"

    @property
    def release_notebook(self) -> Path:
        return self.directory / "release" / self.notebook / f"{self.notebook}.ipynb"

    @property
    def source_dir(self) -> Path:
        return self.directory / "source" / self.notebook

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.grade_cells)


def fingerprint(course: Course, notebook: str) -> str:
    """Hash of everything a grade depends on besides the submission."""
    import nbgrader

    h = hashlib.sha256(f"nbgrader {nbgrader.__version__}\n".encode())
    h.update(course.config_file.read_bytes())
    folder = course.source_dir / notebook
    for path in sorted(
        p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts
    ):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def grade_cells(notebook_path: Path) -> tuple[GradeCell, ...]:
    """The autograded cells of an instructor notebook, in notebook order."""
    cells = json.loads(notebook_path.read_text())["cells"]
    found = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            found.append(GradeCell(meta["grade_id"], float(meta.get("points", 0))))
    return tuple(found)


def template(course: Course, notebook: str, cache: Path) -> Template:
    """The template of ``notebook``, built with ``generate_assignment`` unless cached."""
    notebook = course.check_notebook(notebook)
    key = fingerprint(course, notebook)
    directory = cache / f"{notebook}-{key}"
    if not (directory / "gradebook.db").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".{notebook}-", dir=cache))
        try:
            _generate(course, notebook, build)
            build.rename(directory)
        except OSError:
            if not (directory / "gradebook.db").is_file():  # else another process built it first
                raise
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return Template(notebook, directory, grade_cells(course.instructor_notebook(notebook)), key)


def _generate(course: Course, notebook: str, root: Path) -> None:
    skip_slow_imports()
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    shutil.copytree(
        course.source_dir / notebook,
        root / "source" / notebook,
        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
    )
    config = course_config(course, root)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = notebook
    quiet_nbgrader()
    with nbgrader_path():
        app = GenerateAssignment(coursedir=coursedir, config=config)
        app.force = True
        try:
            app.start()
        except Exception as err:  # nbgrader logs the details; name the notebook
            raise GradingError(
                f"nbgrader generate_assignment failed for {notebook}: {err}"
            ) from err
    # jobs must not see the instructor's solutions: keep only the other files
    for path in (root / "source" / notebook).rglob("*.ipynb"):
        path.unlink()
