"""Small helpers the course notebooks share."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch


def fast_mode() -> bool:
    """True in CI (FLOWLIB_FAST=1) and during nbgrader grading (NBGRADER_EXECUTION set).

    Fast mode only shortens training; it never changes what a check asserts.
    """
    fast = os.environ.get("FLOWLIB_FAST", "") not in ("", "0")
    return fast or bool(os.environ.get("NBGRADER_EXECUTION"))


def device(verbose: bool = True) -> torch.device:
    """CUDA when available, else the CPU; says which."""
    from .runtime import resolve_device

    dev = resolve_device()
    if verbose:
        name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
                else f"CPU ({torch.get_num_threads()} threads)")
        print(f"Using {dev.type}: {name}" + (" (fast mode)" if fast_mode() else ""))
    return dev


@contextmanager
def needs(*exercises: str):
    """Turn an unfinished exercise's NotImplementedError into a message naming it.

    >>> with needs("Exercise 2.1 (dequantize)"):
    ...     z = dequantize(x)
    """
    try:
        yield
    except NotImplementedError:
        names = " and ".join(exercises)
        verb = "is" if len(exercises) == 1 else "are"
        raise NotImplementedError(
            f"This cell uses {names}, which {verb} not finished yet (or not run). Complete "
            f"{'it' if len(exercises) == 1 else 'them'} above, run the cells and their test "
            f"cells, then run this cell again."
        ) from None


def passed(what: str) -> None:
    """The line a visible test cell prints when all its checks pass."""
    print(f"✓ {what}: all visible checks passed.")


_MISSING = object()


def _places(target, namespace):
    """Every (owner, attribute) through which a student's code could reach ``target``."""
    if isinstance(target, tuple):
        return [target]
    import sys
    owners = [m for name, m in list(sys.modules.items())
              if m is not None and (name.split(".")[0] in ("flowlib", "torch"))]
    places = [(m, name) for m in owners for name, value in list(vars(m).items()) if value is target]
    if namespace is not None:
        places += [(namespace, name) for name, value in list(namespace.items()) if value is target]
    return places


def _set(owner, name, value):
    if isinstance(owner, dict):
        if value is _MISSING:
            owner.pop(name, None)
        else:
            owner[name] = value
    elif value is _MISSING:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


def _get(owner, name):
    return owner.get(name, _MISSING) if isinstance(owner, dict) else vars(owner).get(name, _MISSING)


@contextmanager
def _swapped(targets, namespace, make):
    places = [place for target in targets for place in _places(target, namespace)]
    saved = [(owner, name, _get(owner, name)) for owner, name in places]
    try:
        for owner, name in places:
            current = owner[name] if isinstance(owner, dict) else getattr(owner, name)
            _set(owner, name, make(current))
        yield
    finally:
        for owner, name, old in reversed(saved):
            _set(owner, name, old)


@contextmanager
def refusing(*targets, why: str, namespace: dict | None = None):
    """While the block runs, calling any of ``targets`` raises AssertionError(``why``).

    A target is a function (found wherever flowlib, torch or ``namespace``, the notebook's
    globals, hold it) or an ``(owner, attribute)`` pair (a class or an instance and a method
    name). The checks use it where an exercise asks the student not to call the reference.
    """
    def make(_old):
        def refused(*args, **kwargs):
            raise AssertionError(why)
        return refused

    with _swapped(targets, namespace, make):
        yield


@contextmanager
def _logged(targets, namespace, entry):
    calls: list = []

    def make(old):
        def logged(*args, **kwargs):
            calls.append(entry(args))
            return old(*args, **kwargs)
        return logged

    with _swapped(targets, namespace, make):
        yield calls


def recording(*targets, namespace: dict | None = None):
    """While the block runs, record the dtypes of the tensors passed to ``targets``.

    Yields a list that gets one tuple of dtypes per call (see :func:`refusing` for targets).
    """
    return _logged(targets, namespace,
                   lambda args: tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))


def capturing(*targets, namespace: dict | None = None):
    """While the block runs, record the arguments ``targets`` are called with.

    Yields a list that gets one ``args`` tuple per call (see :func:`refusing` for targets).
    """
    return _logged(targets, namespace, lambda args: args)
