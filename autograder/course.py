"""Where the course lives: instructor and student notebooks, nbgrader config, gradebook.

A :class:`Course` names the folders the grader reads. The default one is this
repository: instructor notebooks in ``solutions/NN_name/NN_name.ipynb`` (nbgrader's
source), student notebooks in ``notebooks/NN_name/NN_name.ipynb`` (its release) and
the configuration in ``autograder/nbgrader_config.py``.
"""

from __future__ import annotations

import difflib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"


class GradingError(Exception):
    """Bad input from the instructor (a missing folder, an unknown notebook); the
    command prints the message and exits with status 2."""


@dataclass(frozen=True)
class Course:
    """The folders of a course. ``root`` holds ``solutions/`` and ``notebooks/``."""

    root: Path = REPO
    config_file: Path = CONFIG_FILE

    @property
    def source_dir(self) -> Path:
        return self.root / "solutions"

    @property
    def release_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def gradebook(self) -> Path:
        """The course gradebook named by the config (``autograder/gradebook.db``); for a
        course elsewhere, ``autograder/gradebook.db`` in that course."""
        if self.root != REPO:
            return self.root / "autograder" / "gradebook.db"
        url = str(load_config(self).CourseDirectory.db_url)
        prefix = "sqlite:///"
        if not url.startswith(prefix):
            raise GradingError(f"only a SQLite gradebook is supported, the config names {url}")
        return Path(url[len(prefix) :])

    @property
    def template_cache(self) -> Path:
        """Where released templates are cached (see :mod:`autograder.templates`)."""
        return self.root / "autograder" / "work" / "templates"

    @property
    def default_out(self) -> Path:
        return self.root / "autograder" / "work" / "grades"

    def notebooks(self) -> list[str]:
        """Names of the course notebooks (``NN_name``) that have an instructor version."""
        if not self.source_dir.is_dir():
            raise GradingError(f"no instructor notebooks: {self.source_dir} is not a folder")
        return sorted(
            p.parent.name for p in self.source_dir.glob("*/*.ipynb") if p.stem == p.parent.name
        )

    def check_notebook(self, name: str) -> str:
        """``name`` if it is a course notebook, else a GradingError that suggests one."""
        known = self.notebooks()
        name = name.removesuffix(".ipynb")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise GradingError(
                f"unknown notebook {name!r}{hint} Course notebooks: {', '.join(known) or 'none'}"
            )
        return name

    def instructor_notebook(self, name: str) -> Path:
        return self.source_dir / name / f"{name}.ipynb"

    def student_notebook(self, name: str) -> Path:
        return self.release_dir / name / f"{name}.ipynb"


def load_config(course: Course):
    """The course's nbgrader configuration as a traitlets Config."""
    from traitlets.config.loader import PyFileConfigLoader

    if not course.config_file.is_file():
        raise GradingError(f"no nbgrader configuration at {course.config_file}")
    return PyFileConfigLoader(
        course.config_file.name, path=str(course.config_file.parent)
    ).load_config()


def course_config(course: Course, root: Path):
    """The course configuration, pointed at a private course folder ``root``.

    nbgrader then reads ``root/source``, writes ``root/release`` and
    ``root/autograded`` and keeps its gradebook in ``root/gradebook.db``.
    """
    config = load_config(course)
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.source_directory = "source"
    config.CourseDirectory.release_directory = "release"
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    return config


def venv_bin() -> Path:
    """The folder of the running interpreter: nbgrader needs its ``alembic`` there."""
    return Path(sys.executable).parent


@contextmanager
def nbgrader_path():
    """Put the interpreter's bin folder first on PATH while nbgrader runs in this process."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{venv_bin()}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


def skip_slow_imports() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax``, which builds a parser for IRI
    format checks at import time (about 3 s of CPU per process; notebooks never use
    that format). jsonschema imports it inside ``suppress(ImportError)``."""
    sys.modules.setdefault("rfc3987_syntax", None)


def quiet_nbgrader():
    """Silence nbgrader's per-file INFO lines and SQLAlchemy's known harmless warning."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*not in session.*")
    warnings.filterwarnings("ignore", message="Cell is missing an id field")
    for name in ("traitlets", "nbgrader", "NbGrader"):
        logging.getLogger(name).setLevel(logging.WARNING)
