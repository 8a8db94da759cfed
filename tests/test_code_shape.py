"""The package stays readable: short functions, small modules, lint-clean (ruff)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("flowlib", "autograder")
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 80, 500


def _modules():
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these into functions that do one job each:\n" + "\n".join(long)


def test_no_module_is_longer_than_500_lines():
    big = [
        f"{p.relative_to(REPO)} ({n} lines)"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not big, "split these modules by what they do:\n" + "\n".join(big)


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: `pip install -e '.[dev]'` (make setup does it)")
    proc = subprocess.run(
        [ruff, "check", *PACKAGES, "tests", "benchmarks", "tools"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
