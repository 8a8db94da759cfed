"""Run students' answers against an exercise's visible and hidden tests, in-process.

An instructor notebook (``solutions/NN_name/NN_name.ipynb``) is executed once, cell by cell,
in fast mode with pictures and widgets switched off. Before each exercise's solution cell
the namespace is snapshotted. An answer is then tried in a (shallow) copy of that snapshot:
the solution cell with its ``### BEGIN SOLUTION`` regions replaced by the answer, the
notebook's cells between the solution and its test cell, then the test cell's visible part
(what the student sees: it must print the ``✓ ... passed`` line or raise with a hint) and,
in another copy, its hidden part (what the autograder adds).

This is mutation testing of the checks: every wrong answer must be caught by the visible
part with a message that names the mistake, and every correct answer, however it is
written, must pass both parts.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import textwrap
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_RE = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?",
                         re.MULTILINE | re.DOTALL)


@dataclass
class Case:
    """One student answer to one exercise.

    ``regions`` replaces the solution regions of the exercise cell by index (0 is the first
    ``### BEGIN SOLUTION`` region), each written without its indentation; regions not given
    keep the instructor's code. ``hint`` is None for a correct answer (visible and hidden
    parts must both pass); for a wrong answer it is a substring the visible message must
    contain, and the hidden part must fail too unless ``hidden_catches`` is False.
    """

    exercise: str
    name: str
    regions: dict[int, str]
    hint: str | None = None
    hidden_catches: bool = True
    extra: str = ""   # code run before the answer cell (e.g. a student's own import)

    @property
    def id(self) -> str:
        return f"{self.exercise}-{re.sub(r'[^a-z0-9]+', '_', self.name.lower()).strip('_')}"


@dataclass
class Result:
    passed: bool
    message: str
    error: str = ""   # the exception's type name, "" when it passed


@dataclass
class Exercise:
    solution: str
    between: list[str]
    visible: str
    hidden: str
    snapshot: dict = field(repr=False, default_factory=dict)


def _cells(path: Path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        yield "".join(cell["source"]), meta


@contextlib.contextmanager
def _notebook_environment(folder: Path):
    """Fast mode, no pictures or widgets, the notebook's folder as cwd; all restored after."""
    import ipywidgets
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = (os.environ.get("FLOWLIB_FAST"), plt.show, ipywidgets.interact, os.getcwd())
    os.environ["FLOWLIB_FAST"] = "1"
    plt.show = lambda *args, **kwargs: plt.close("all")
    ipywidgets.interact = lambda *args, **kwargs: (lambda f: f) if not args else None
    os.chdir(folder)
    try:
        yield
    finally:
        fast, plt.show, ipywidgets.interact, cwd = saved
        os.chdir(cwd)
        if fast is None:
            os.environ.pop("FLOWLIB_FAST", None)
        else:
            os.environ["FLOWLIB_FAST"] = fast


def split_tests(source: str) -> tuple[str, str]:
    """A test cell's (visible, hidden) code."""
    if HIDDEN_BEGIN not in source:
        return source, ""
    visible, rest = source.split(HIDDEN_BEGIN, 1)
    hidden = rest.split(HIDDEN_END, 1)[0]
    return visible, hidden


def replace_regions(source: str, regions: dict[int, str]) -> str:
    """The solution cell with the given regions replaced (indented like their markers)."""
    count = -1

    def sub(match):
        nonlocal count
        count += 1
        if count not in regions:
            return match.group(0)
        return textwrap.indent(textwrap.dedent(regions[count]).strip("\n") + "\n", match.group(1))

    out = SOLUTION_RE.sub(sub, source)
    missing = set(regions) - set(range(count + 1))
    if missing:
        raise ValueError(f"the solution cell has {count + 1} regions; no region {sorted(missing)}")
    return out


class NotebookSession:
    """One instructor notebook, executed once; its exercises snapshotted."""

    def __init__(self, name: str):
        path = next(ROOT.glob(f"solutions/{name}*/*.ipynb"))
        self.path = path
        self.exercises: dict[str, Exercise] = {}
        ns: dict = {"__name__": "__main__", "display": lambda *args, **kwargs: None}
        cells = list(_cells(path))
        last = max(i for i, (_, meta) in enumerate(cells) if meta.get("grade"))
        current = None
        with _notebook_environment(path.parent):
            for source, meta in cells[:last + 1]:   # what follows the last test cell is not needed
                grade_id = meta.get("grade_id", "")
                if meta.get("solution"):
                    current = Exercise(source, [], "", "", snapshot=dict(ns))
                    self.exercises[grade_id] = current
                elif meta.get("grade") and grade_id.endswith("_tests"):
                    current.visible, current.hidden = split_tests(source)
                    current = None
                elif current is not None:
                    current.between.append(source)
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, f"<{name}:{grade_id or 'cell'}>", "exec"), ns)  # noqa: S102

    def _prepare(self, exercise: Exercise, case: Case) -> dict:
        ns = dict(exercise.snapshot)
        code = case.extra + "\n" + replace_regions(exercise.solution, case.regions)
        for part in [code, *exercise.between]:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(part, f"<answer {case.id}>", "exec"), ns)  # noqa: S102 - running notebook cells is the point
        return ns

    def run(self, case: Case, part: str) -> Result:
        """Run the answer, then the test cell's ``visible`` or ``hidden`` part."""
        exercise = self.exercises[case.exercise]
        code = exercise.visible if part == "visible" else exercise.hidden
        out = io.StringIO()
        try:
            with _notebook_environment(self.path.parent):
                ns = self._prepare(exercise, case)
                with contextlib.redirect_stdout(out):
                    exec(compile(code, f"<{case.exercise} {part} tests>", "exec"), ns)  # noqa: S102
        except Exception as err:  # noqa: BLE001 - every failure is a result here
            last = traceback.extract_tb(err.__traceback__)[-1]
            name = type(err).__name__
            return Result(False, f"{name}: {err} [line: {last.line}]", name)
        return Result(True, out.getvalue())


_SESSIONS: dict[str, NotebookSession] = {}


def session(name: str) -> NotebookSession:
    if name not in _SESSIONS:
        _SESSIONS.clear()   # one notebook's namespace at a time
        _SESSIONS[name] = NotebookSession(name)
    return _SESSIONS[name]
