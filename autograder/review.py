"""Checks on a submitted file before it is run: is it a notebook, and is any of its
code worth a look by hand.

The flags do not change a grade. In-process tests cannot stop a determined student
who patches ``importlib``, ``torch`` or IPython itself; these patterns point the
instructor at the few submissions that try.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from .collect import MAX_NOTEBOOK_BYTES

SUSPICIOUS = {
    "patches flowlib.checks": re.compile(
        r"(flowlib\.)?checks\.\w+\s*=(?!=)|setattr\(\s*(flowlib|_?checks)"
    ),
    "uses importlib or sys.modules": re.compile(r"importlib|sys\.modules"),
    "changes builtins": re.compile(r"\bbuiltins\b|__builtins__"),
    "installs an exception handler": re.compile(r"set_custom_exc|excepthook"),
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
    except Exception as err:  # nbformat's own errors for JSON that is not a notebook
        return f"not a valid notebook: {str(err).splitlines()[0][:200]}"
    if not isinstance(nb.get("cells"), list) or not nb.cells:
        return "not a valid notebook: it has no cells"
    return None


def flags(path: Path) -> list[str]:
    """Names of the suspicious patterns found in the cells a student may edit."""
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except Exception:
        return []
    found = set()
    for cell in cells:
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if cell.get("cell_type") != "code" or (
            (meta.get("grade") or meta.get("locked")) and not meta.get("solution")
        ):
            continue  # locked and test cells are restored from the gradebook anyway
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        found.update(name for name, pattern in SUSPICIOUS.items() if pattern.search(source))
    return sorted(found)
