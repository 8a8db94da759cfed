"""Every instructor notebook runs top to bottom under nbval in fast mode.

Each notebook runs in its own pytest/nbval process; its wall time is printed at the end
of the session (a measurement, not a timed test) and written to
test-artifacts/notebook_times.csv.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("solutions/[0-9]*/*.ipynb"))
TIMES: dict[str, float] = {}


def test_every_source_has_an_up_to_date_instructor_notebook():
    result = subprocess.run([sys.executable, "tools/build_notebooks.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(NOTEBOOKS) == 7, [p.name for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(notebook, tmp_path):
    env = {**os.environ, "FLOWLIB_FAST": "1"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=600", "-q",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(notebook)],
        cwd=notebook.parent, env=env, capture_output=True, text=True, timeout=900, check=False)
    TIMES[notebook.stem] = time.perf_counter() - start
    assert result.returncode == 0, (
        f"nbval failed on {notebook.name}:\n{result.stdout[-6000:]}{result.stderr[-2000:]}")


def notebook_time_report():
    """Write and return the per-notebook times measured in this session."""
    if not TIMES:
        return ""
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    lines = [f"{name},{seconds:.1f}" for name, seconds in sorted(TIMES.items())]
    (out / "notebook_times.csv").write_text("notebook,seconds\n" + "\n".join(lines) + "\n")
    total = sum(TIMES.values())
    return "\n".join([f"  {name:28s} {seconds:6.1f} s" for name, seconds in sorted(TIMES.items())]
                     + [f"  {'total':28s} {total:6.1f} s"])
