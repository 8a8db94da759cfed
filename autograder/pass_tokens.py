"""Positive proof that a test cell ran to its end.

nbgrader scores a test cell as passed when no error output appeared. A submission
that swallows errors (an input transformer that turns cells into ``pass``, a wrapped
``run_cell``, a patched ``showtraceback``) would then pass every test. Instead, before
execution each test cell gets one more line, ``print(TOKEN)``, with a random token per
run and per cell; the grader, outside the kernel, accepts the cell only if that token
came back on its standard output and no error did. A cell whose checks stopped early,
or were never run, cannot print it. The line and the token are removed before the
notebook is saved, so feedback never shows them.
"""

from __future__ import annotations

import secrets

from nbformat import NotebookNode

from .error_names import NO_PASS_SIGNAL

PREFIX = "autograder-pass-"


def is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def arm(cell) -> str:
    """Append the token line to a test cell; return the token."""
    token = PREFIX + secrets.token_hex(16)
    cell.source = cell.source.rstrip("\n") + f"\nprint({token!r})"
    return token


def _coalesced(outputs: list) -> list:
    """Consecutive stream outputs of one stream joined (the kernel may send one print
    in several messages)."""
    merged = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (
            out.get("output_type") == "stream"
            and last is not None
            and last.get("output_type") == "stream"
            and last.get("name") == out.get("name")
        ):
            last.text = last.get("text", "") + out.get("text", "")
        else:
            merged.append(out)
    return merged


def disarm(cell, token: str) -> bool:
    """Remove the token line and its output; True when the cell printed the token."""
    cell.source = cell.source.removesuffix(f"\nprint({token!r})")
    cell.outputs = _coalesced(cell.get("outputs", []))
    seen = False
    for out in cell.outputs:
        if out.get("output_type") == "stream" and token in out.get("text", ""):
            seen = seen or out.get("name") == "stdout"
            out.text = out.text.replace(f"{token}\n", "").replace(token, "")
    cell.outputs = [
        o for o in cell.outputs if not (o.get("output_type") == "stream" and not o.text)
    ]
    return seen


def fail_unproven(cell) -> None:
    """Give a test cell that did not prove its end an error, so it scores 0."""
    if any(o.get("output_type") == "error" for o in cell.outputs):
        return
    evalue = "the cell did not reach its end, so its checks did not all run"
    cell.outputs.append(
        NotebookNode(
            output_type="error",
            ename=NO_PASS_SIGNAL,
            evalue=evalue,
            traceback=[f"{NO_PASS_SIGNAL}: {evalue}"],
        )
    )
