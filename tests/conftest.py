"""Shared pytest fixtures for the flowlib tests.

Real data (MNIST, CelebA): ``data_root`` is the folder that holds ``MNIST/raw/`` and
``celeba/``. With ``FLOWLIB_DATA`` set (as in CI) that folder is used and a wrong one
FAILS the tests, so CI never goes green by skipping. Without it, ``../shared/data``
next to the repository and then the repository's ``data/`` are tried, and the tests
that need real data are skipped only when neither has any.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_SUBFOLDERS = {"MNIST": Path("MNIST", "raw"), "celeba": Path("celeba")}
_HOW = "See data/README.md for how to get the data."


def _has(root: Path, need: str | None = None) -> bool:
    needs = [need] if need else list(_SUBFOLDERS)
    return any((root / _SUBFOLDERS[n]).is_dir() for n in needs)


def _unnamed_places() -> list[Path]:
    """Where to look without FLOWLIB_DATA: ../shared/data (unless FLOWLIB_NO_SHARED_DATA=1,
    as on a fresh clone), then the repository's data/."""
    shared = [] if os.environ.get("FLOWLIB_NO_SHARED_DATA") else [REPO.parent / "shared" / "data"]
    return [*shared, REPO / "data"]


def _real_data_root() -> Path | None:
    """FLOWLIB_DATA (failing the test when it is wrong), else the first unnamed place with data."""
    env = os.environ.get("FLOWLIB_DATA")
    if env:
        root = Path(os.path.abspath(Path(env).expanduser()))  # relative: from the cwd
        if not _has(root):
            pytest.fail(
                f"FLOWLIB_DATA={env!r} ({root}) has neither MNIST/raw/ nor celeba/. "
                f"Fix it or unset it. {_HOW}"
            )
        return root
    return next((root for root in _unnamed_places() if _has(root)), None)


@pytest.fixture(scope="session")
def notebook_data() -> Path | None:
    """The data folder for notebooks run in a server or kernel: the real data where there is
    some, else None, and the notebooks use data/embedded/ as on a fresh clone (never a skip)."""
    return _real_data_root()


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real data; fails on a wrong FLOWLIB_DATA, skips when none exists."""
    root = _real_data_root()
    if root is not None:
        return root
    pytest.skip(
        f"No real data: FLOWLIB_DATA is not set and neither {REPO.parent / 'shared/data'} "
        f"nor {REPO / 'data'} has MNIST/raw/ or celeba/. {_HOW}"
    )


def _dataset_root(data_root: Path, need: str) -> Path:
    if _has(data_root, need):
        return data_root
    message = f"{data_root} has no {_SUBFOLDERS[need].as_posix()}/. {_HOW}"
    if os.environ.get("FLOWLIB_DATA"):
        pytest.fail(f"FLOWLIB_DATA: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def mnist_root(data_root: Path) -> Path:
    """``data_root``, checked to hold MNIST/raw/ (fails under FLOWLIB_DATA, else skips)."""
    return _dataset_root(data_root, "MNIST")


@pytest.fixture(scope="session")
def celeba_root(data_root: Path) -> Path:
    """``data_root``, checked to hold celeba/ (fails under FLOWLIB_DATA, else skips)."""
    return _dataset_root(data_root, "celeba")


def pytest_terminal_summary(terminalreporter):
    """Print the per-notebook execution times measured by tests/test_notebooks.py."""
    import sys

    module = sys.modules.get("test_notebooks")
    times = module.notebook_time_report() if module else ""
    if times:
        terminalreporter.section("notebook execution times (fast mode, nbval)")
        terminalreporter.write_line(times)
