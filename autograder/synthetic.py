"""Synthetic submissions with known scores, built from a notebook's instructor and
student versions: what the tests and the throughput benchmark grade.

Scores follow from the notebook's order: a cell only uses what runs above it, so
breaking the *last* exercise costs exactly the points of the grade cells below the
last solution cell (``last``), and nothing above it. The breaking code goes at the top
of that cell, so it runs once and the exercise stays undefined. With ``total`` the
notebook's points:

==================  =======================================================  ==============
case                what the student did                                     expected
==================  =======================================================  ==============
correct             the instructor version                                   total
release             nothing: the unmodified student version                  0
partial             every exercise but the last                              total - last
syntax_error        a syntax error in the last exercise                      total - last
import_error        a first cell importing a module that does not exist      total
infinite_loop       ``while True: pass`` in the last exercise                total - last
memory_hog          allocates 8 GB in the last exercise                      total - last
sys_exit            ``sys.exit(1)`` in the last exercise                     total - last
os_exit             ``os._exit(1)`` in the last exercise (kills the kernel)  total - last
edited_tests        partial, every test cell now ``assert True``, 100 points total - last
deleted_tests       correct, every test cell deleted                         total
monkeypatch         partial, every ``flowlib.checks`` check patched to pass  total - last
invalid_json        a file that is not JSON                                  not graded
wrong_name          a correct notebook saved as ``homework.ipynb``           not attributed
==================  =======================================================  ==============

``memory_hog`` only loses its points when the memory cap works (8 GB would fit in
the machine), and ``monkeypatch`` only when the hidden tests reload ``flowlib.checks``.
With ``extra=True`` three more cases, all total - last: ``os_exit_inside`` puts
``os._exit(1)`` inside the last exercise's code, so the test cells that call it kill
the kernel themselves; ``print_loop`` prints forever in the last exercise;
``deaf_loop`` loops forever there after ignoring SIGINT, so the timeout's interrupt
does not stop it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

NOT_GRADED = "not graded"
NOT_ATTRIBUTED = "not attributed"

LOOP = "while True:\n    pass"
PRINT_LOOP = "while True:\n    print('all work and no play ' * 10)"
DEAF_LOOP = "import signal as _signal\n_signal.signal(_signal.SIGINT, _signal.SIG_IGN)\n" + LOOP
MEMORY = "import torch as _torch\n_torch.empty(8 << 30, dtype=_torch.uint8).fill_(1)"
SYS_EXIT = "import sys as _sys\n_sys.exit(1)"
OS_EXIT = "import os as _os\n_os._exit(1)"
PATCH = (
    "import flowlib.checks as _checks\n"
    "for _name in dir(_checks):\n"
    "    if _name.startswith('check'):\n"
    "        setattr(_checks, _name, lambda *args, **kwargs: {})"
)


@dataclass
class Case:
    name: str  # also the student id
    filename: str
    content: bytes
    expected: float | str  # points, NOT_GRADED or NOT_ATTRIBUTED


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text


def _code_cell(text: str, cell_id: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": cell_id,
        "metadata": {},
        "outputs": [],
        "source": text,
    }


def _prepend(cell: dict, code: str) -> None:
    _set_source(cell, code + "\n" + _source(cell))


def _inject(cell: dict, code: str) -> None:
    """Put ``code`` at the start of the cell's first solution region (its indentation)."""
    lines = _source(cell).split("\n")
    for i, line in enumerate(lines):
        if line.strip() == "### BEGIN SOLUTION":
            indent = line[: len(line) - len(line.lstrip())]
            lines[i + 1 : i + 1] = [indent + ln for ln in code.split("\n")]
            _set_source(cell, "\n".join(lines))
            return
    _prepend(cell, code)


def cases(instructor: Path, student: Path, extra: bool = False) -> list[Case]:
    """The synthetic submissions of one notebook (see the module docstring)."""
    name = instructor.stem
    inst = json.loads(instructor.read_text())
    release = json.loads(student.read_text())
    cells = inst["cells"]
    solutions = [i for i, c in enumerate(cells) if _meta(c).get("solution")]
    graded = [i for i, c in enumerate(cells) if _meta(c).get("grade")]
    if not solutions or not graded:
        raise ValueError(f"{name} needs solution cells and grade cells")
    total = sum(float(_meta(cells[i]).get("points", 0)) for i in graded)
    last_sol = solutions[-1]
    last = sum(float(_meta(cells[i]).get("points", 0)) for i in graded if i > last_sol)
    stubs = {_meta(c).get("grade_id"): c for c in release["cells"] if _meta(c).get("solution")}

    def variant(change=None) -> dict:
        nb = copy.deepcopy(inst)
        if change:
            change(nb["cells"])
        return nb

    def stub_last(cs):
        cs[last_sol] = copy.deepcopy(stubs[_meta(cs[last_sol])["grade_id"]])

    def break_last(code):
        return lambda cs: _prepend(cs[last_sol], code)

    def edit_tests(cs):
        stub_last(cs)
        for i in graded:
            _set_source(cs[i], "assert True")
            cs[i]["metadata"]["nbgrader"]["points"] = 100

    def patch_checks(cs):
        stub_last(cs)
        cs.insert(0, _code_cell(PATCH, "student-patch"))

    def add_import_error(cs):
        cs.insert(0, _code_cell("import a_module_that_does_not_exist", "student-import"))

    def syntax_error(cs):
        _set_source(cs[last_sol], _source(cs[last_sol]) + "\ndef broken(:\n    pass\n")

    made = [
        ("correct", variant(), total),
        ("release", release, 0.0),
        ("partial", variant(stub_last), total - last),
        ("syntax_error", variant(syntax_error), total - last),
        ("import_error", variant(add_import_error), total),
        ("infinite_loop", variant(break_last(LOOP)), total - last),
        ("memory_hog", variant(break_last(MEMORY)), total - last),
        ("sys_exit", variant(break_last(SYS_EXIT)), total - last),
        ("os_exit", variant(break_last(OS_EXIT)), total - last),
        ("edited_tests", variant(edit_tests), total - last),
        ("deleted_tests", variant(lambda cs: [cs.pop(i) for i in reversed(graded)]), total),
        ("monkeypatch", variant(patch_checks), total - last),
    ]
    if extra:
        made.append(
            ("os_exit_inside", variant(lambda cs: _inject(cs[last_sol], OS_EXIT)), total - last)
        )
        made.append(("print_loop", variant(break_last(PRINT_LOOP)), total - last))
        made.append(("deaf_loop", variant(break_last(DEAF_LOOP)), total - last))
    out = [
        Case(n, f"{name}.ipynb", (json.dumps(nb, indent=1) + "\n").encode(), exp)
        for n, nb, exp in made
    ]
    out.append(
        Case(
            "invalid_json",
            f"{name}.ipynb",
            b'{"cells": [{"cell_type": "code", "source": ',
            NOT_GRADED,
        )
    )
    out.append(Case("wrong_name", "homework.ipynb", out[0].content, NOT_ATTRIBUTED))
    return out


def write(cases_: list[Case], folder: Path, students: dict[str, str] | None = None) -> None:
    """``folder/STUDENT/FILE`` for every case (student id: the case name)."""
    for case in cases_:
        student = (students or {}).get(case.name, case.name)
        path = folder / student / case.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.content)
