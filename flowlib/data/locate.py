"""Where the data is: the search order, and what to say when it is not there."""

from __future__ import annotations

import os
from pathlib import Path

_README = "data/README.md"
_NEEDS = {"mnist": ("MNIST", Path("MNIST", "raw")), "celeba": ("CelebA", Path("celeba"))}


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where flowlib looked. The message lists every place looked
    and how to get the data."""


class DataWarning(UserWarning):
    """The data on disk is usable but not complete (skipped images, missing rows)."""


def repo_data_dir() -> Path:
    """The repository's ``data/`` folder (next to the ``flowlib`` package)."""
    return Path(__file__).resolve().parents[2] / "data"


def default_cache_dir() -> Path:
    """Where decoded images are cached: ``$FLOWLIB_CACHE`` or ``~/.cache/flowlib``."""
    env = os.environ.get("FLOWLIB_CACHE")
    return _absolute(env) if env else Path.home() / ".cache" / "flowlib"


def _absolute(path) -> Path:
    """``path`` as an absolute path; relative paths count from the current directory."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _need(need: str) -> tuple[str, Path]:
    try:
        return _NEEDS[need.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"need must be one of 'MNIST', 'celeba', got {need!r}.") from None


def _candidates(root) -> list[tuple[str, Path | None, bool]]:
    """(description, path or None, explicit) for each source, in search order."""
    env = os.environ.get("FLOWLIB_DATA")
    return [
        ("root argument", None if root is None else _absolute(root), True),
        ("environment variable FLOWLIB_DATA", _absolute(env) if env else None, True),
        ("repository data/ folder", repo_data_dir(), False),
    ]


def named_explicitly(root) -> bool:
    """Whether a place was named (``root`` or ``$FLOWLIB_DATA``): then missing data is an
    error, never a reason to download or to fall back on the embedded subset."""
    return root is not None or bool(os.environ.get("FLOWLIB_DATA"))


def _how_to_get(name: str) -> str:
    readme = repo_data_dir() / "README.md"
    if name == "MNIST":
        return (
            f"How to get MNIST: see {_README} ({readme}). In short: put "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte (or the .gz files) in <root>/MNIST/raw/, then pass "
            "root=<root> or set FLOWLIB_DATA=<root>; or use MNIST(download=True) where "
            "the internet is reachable."
        )
    return (
        f"How to get CelebA: see {_README} ({readme}). CelebA cannot be downloaded "
        "automatically (it sits behind Google Drive quotas and a non-commercial licence "
        "agreement): fetch img_align_celeba.zip, list_attr_celeba.txt and "
        "list_eval_partition.txt by hand (or the Kaggle 'celeba-dataset' CSV version), "
        "unpack them into <root>/celeba/, then pass root=<root> or set FLOWLIB_DATA=<root>."
    )


def _not_found(name: str, sub: Path, lines: list[str]) -> DataNotFoundError:
    msg = (
        f"No {name} data found: looked for a folder that contains {sub.as_posix()}/.\n"
        "Places looked, in order:\n" + "\n".join(lines) + "\n" + _how_to_get(name)
    )
    return DataNotFoundError(msg)


def find_data_root(root=None, need: str = "MNIST") -> Path:
    """Return the folder that contains the dataset ``need`` ("MNIST" or "celeba").

    Looks at ``root``, then ``$FLOWLIB_DATA``, then the repository's ``data/``; a
    candidate counts when it holds ``MNIST/raw/`` (for MNIST) or ``celeba/``. Relative
    paths count from the current working directory. An explicit ``root`` or
    ``FLOWLIB_DATA`` that does not hold the data is an error, not a reason to look
    elsewhere: a typo should not silently train on other data.

    Raises:
        DataNotFoundError: listing every place looked and how to get the data.
    """
    name, sub = _need(need)
    lines, chosen, first_explicit_failed = [], None, False
    for i, (what, path, explicit) in enumerate(_candidates(root), start=1):
        if path is None:
            lines.append(f"  {i}. {what}: not given")
            continue
        ok = (path / sub).is_dir()
        if ok:
            state = f"has {sub.as_posix()}/"
            if chosen is not None:
                state += " (not used: found at an earlier place)"
            elif first_explicit_failed:
                state += " (not used: an earlier place was given explicitly)"
        elif not path.is_dir():
            state = "no such folder"
        else:
            state = f"exists, but has no {sub.as_posix()}/ inside"
            if path.name.lower() == sub.parts[0].lower() or (path / "raw").is_dir():
                state += f" (this looks like the {sub.parts[0]} folder itself: give its parent)"
        lines.append(f"  {i}. {what}: {path} -> {state}")
        if chosen is None and not first_explicit_failed:
            if ok:
                chosen = path
            elif explicit:
                first_explicit_failed = True
    if chosen is None:
        raise _not_found(name, sub, lines)
    return chosen
