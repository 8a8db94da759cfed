"""Checks on a submitted file before it is run: is it a notebook, does its code touch
the machinery that grading relies on (held), and is any of it worth a look by hand.

:data:`HOLDS` name code that changes IPython's or the interpreter's machinery: a
submission that has any of it is held (0 points until an instructor releases it), as is
one whose kernel showed such a change at run time (:mod:`autograder.tamper_probe`).
:data:`SUSPICIOUS` flags do not change a grade; they point the instructor at the few
submissions worth a look.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from .collect import MAX_NOTEBOOK_BYTES

HOLDS = {
    "patches get_ipython().input_transformers": re.compile(
        r"input_transformer|ast_transformers|InputTransformer|TransformerManager"
    ),
    "patches get_ipython().run_cell": re.compile(
        r"\brun_cell|run_ast_nodes|\brun_code\b|transform_cell"
    ),
    "patches get_ipython().events": re.compile(
        r"\bevents\s*\.\s*(register|callbacks|unregister|trigger)"
    ),
    "installs a custom exception handler": re.compile(
        r"set_custom_exc|CustomTB|custom_exceptions|excepthook"
    ),
    "patches showtraceback": re.compile(r"showtraceback|showsyntaxerror|InteractiveTB|displayhook"),
    "calls sys.settrace or sys.setprofile": re.compile(
        r"settrace|setprofile|sys\s*\.\s*monitoring"
    ),
    "changes builtins": re.compile(r"\bbuiltins\b|__builtins__"),
    "patches importlib.reload": re.compile(
        r"importlib\s*\.\s*reload\s*=(?!=)|setattr\(\s*importlib|importlib\s*\.\s*__dict__"
    ),
    "patches the kernel": re.compile(
        r"get_ipython\(\)\s*\.\s*kernel|\bkernel\s*\.\s*(session|shell)\b"
    ),
    "runs encoded code": re.compile(
        r"\b(exec|eval)\s*\(.*(b64|base64|decode|codecs|zlib|marshal|bytes\.fromhex)"
    ),
}

SUSPICIOUS = {
    "patches flowlib.checks": re.compile(
        r"(flowlib\.)?checks\.\w+\s*=(?!=)|setattr\(\s*(flowlib|_?checks)"
    ),
    "uses importlib or sys.modules": re.compile(r"importlib|sys\.modules"),
    "exits the kernel": re.compile(r"os\._exit|sys\.exit|(?<![\w.])(exit|quit)\(\s*\)|os\.kill"),
    "starts processes": re.compile(r"subprocess|os\.system|os\.fork|Popen|multiprocessing"),
    "reads grader files": re.compile(r"gradebook|autograded|\.\./\.\./"),
    "rewrites code objects": re.compile(r"__code__|__globals__|sys\._getframe"),
}


def notebook_problem(path: Path) -> str | None:
    """Why the file cannot be graded as a notebook, or None."""
    import nbformat

    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return f"file too large ({size >> 20} MB, the limit is {MAX_NOTEBOOK_BYTES >> 20} MB)"
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        return "not a notebook: the file is not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not a valid notebook: not valid JSON ({err})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # missing cell ids and the like: nbgrader copes
            nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 nbformat's own errors for JSON that is not a notebook
        return f"not a valid notebook: {str(err).splitlines()[0][:200]}"
    if not isinstance(nb.get("cells"), list) or not nb.cells:
        return "not a valid notebook: it has no cells"
    return None


def _code(path: Path) -> list[str]:
    """The source of every code cell (a cell's metadata is the student's to forge, so
    locked and test cells are read too)."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    sources = []
    for cell in cells if isinstance(cells, list) else []:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            sources.append("".join(map(str, source)) if isinstance(source, list) else str(source))
    return sources


def _found(path: Path, patterns: dict[str, re.Pattern], exempt: set[str]) -> list[str]:
    sources = [s for s in _code(path) if s not in exempt]
    return sorted(
        name for name, pattern in patterns.items() if any(pattern.search(s) for s in sources)
    )


def flags(path: Path, exempt: set[str] | None = None) -> list[str]:
    """Names of the suspicious patterns in the code (cells in ``exempt``, the course's
    own, are skipped)."""
    return _found(path, SUSPICIOUS, exempt or set())


def holds(path: Path, exempt: set[str] | None = None) -> list[str]:
    """Why a submission is held: the :data:`HOLDS` its code matches."""
    return _found(path, HOLDS, exempt or set())


def course_cells(release_notebook: Path) -> set[str]:
    """The code of the released notebook's cells: the course's own code is never held."""
    return set(_code(release_notebook))
