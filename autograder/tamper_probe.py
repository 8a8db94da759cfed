"""Run-time detection of code that changes IPython's or the interpreter's machinery.

Before the first cell and after every cell, the grader asks the kernel (a silent
execution, answered through ``user_expressions``) for a fingerprint of the machinery
a submission could use to fake its results: input and AST transformers, ``run_cell``
and its relatives, event callbacks, custom exception handlers and ``showtraceback``,
``sys.settrace``/``setprofile``, ``builtins`` and ``importlib.reload``. The grader
keeps the first fingerprint outside the kernel and compares each later one with it;
what changed is named and the submission is held. This finds an obfuscated patch
(``getattr(ip, "input_" + "transformers_cleanup")``, ``exec`` of an encoded string)
as well as a plain one. A probe that does not answer is a finding too.
"""

from __future__ import annotations

import ast
import json

NO_BASELINE = "the grader could not check a fresh kernel's machinery (grade it again)"
ALLOWED_CALLBACK_PACKAGES = (
    "IPython",
    "ipykernel",
    "matplotlib_inline",
    "matplotlib",
    "ipywidgets",
    "comm",
)

PROBE = r"""
def __autograder_fingerprint():
    import builtins, importlib, json, sys, threading
    ip = get_ipython()
    fp = {}
    for name in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
        fp["get_ipython()." + name] = [id(f) for f in getattr(ip, name)]
    tm = ip.input_transformer_manager
    parts = ("cleanup_transforms", "line_transforms", "token_transformers")
    fp["get_ipython().input_transformer_manager"] = [id(tm)] + [
        id(f) for n in parts for f in getattr(tm, n)]
    for name in @METHODS@:
        attr = getattr(ip, name, None)
        fp["get_ipython()." + name] = [name in vars(ip), id(getattr(attr, "__func__", attr))]
    fp["get_ipython().set_custom_exc"] = [repr(ip.custom_exceptions)]
    def foreign(f):
        mod = getattr(getattr(f, "__func__", f), "__module__", None) or ""
        return not mod.split(".")[0] in @ALLOWED@
    fp["get_ipython().events"] = sorted(
        [k, id(getattr(f, "__func__", f))]
        for k, fs in ip.events.callbacks.items() for f in fs if foreign(f))
    fp["sys.settrace"] = [repr(sys.gettrace()), repr(threading.gettrace())]
    fp["sys.setprofile"] = [repr(sys.getprofile()), repr(threading.getprofile())]
    fp["builtins"] = sorted([k, id(v)] for k, v in vars(builtins).items() if k not in @VOLATILE@)
    fp["importlib.reload"] = [id(importlib.reload), id(importlib.import_module)]
    kernel = getattr(ip, "kernel", None)
    fp["the kernel's message handling"] = [sorted(k for k in vars(kernel) if k in @KERNEL@),
        [id(getattr(type(kernel), k, None)) for k in @KERNEL@], id(type(kernel.session).send),
        "send" in vars(kernel.session)] if kernel else []
    return json.dumps(fp)
"""

METHODS = (
    "run_cell",
    "run_cell_async",
    "run_ast_nodes",
    "run_code",
    "run_cell_magic",
    "run_line_magic",
    "transform_cell",
    "transform_ast",
    "should_run_async",
    "showtraceback",
    "_showtraceback",
    "showsyntaxerror",
    "set_custom_exc",
    "user_expressions",
    "ex",
    "ev",
    "safe_execfile",
    "_run_cell",
)
KERNEL_METHODS = (
    "do_execute",
    "execute_request",
    "send_response",
    "_publish_status",
    "dispatch_shell",
)
VOLATILE = ("_", "__", "___", "input", "raw_input")


def request() -> str:
    """One probe: an expression for ``user_expressions``, so that it is evaluated
    without passing through input transformers or ``run_cell``."""
    code = PROBE
    for key, value in (
        ("@METHODS@", METHODS),
        ("@KERNEL@", KERNEL_METHODS),
        ("@VOLATILE@", VOLATILE),
        ("@ALLOWED@", ALLOWED_CALLBACK_PACKAGES),
    ):
        code = code.replace(key, repr(value))
    call = "ns['__autograder_fingerprint']()"
    return f"(lambda ns: (exec({code!r}, ns), {call})[1])({{'get_ipython': get_ipython}})"


def read_answer(reply: dict | None, name: str = "fingerprint") -> dict | None:
    """The fingerprint in a probe's execute_reply, or None when it did not answer properly."""
    content = (reply or {}).get("content", {})
    answer = content.get("user_expressions", {}).get(name, {})
    if content.get("status") != "ok" or answer.get("status") != "ok":
        return None
    text = answer.get("data", {}).get("text/plain", "")
    try:
        value = json.loads(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def changes(baseline: dict, now: dict | None) -> list[str]:
    """What changed, as ``patches NAME`` (the hold reasons)."""
    if now is None:
        return ["patches IPython (the grader's check of the kernel got no proper answer)"]
    return [f"patches {key}" for key in baseline if now.get(key) != baseline[key]]
