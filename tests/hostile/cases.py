"""Hostile submissions of one course notebook, each with what grading must make of it.

Every case is the instructor version (``correct``, full marks) or the unmodified
release (``release``, 0 points) with one attack in a cell of its own at the top (or a
change of the notebook itself). ``expected`` is the exact score; ``held`` a piece of
the hold reason the submission must get (it then scores 0 in grades.csv, and its
stored score is ``expected``). :class:`Context` carries what an attack aims at: the
output folder, the course checkout, a listener port, a marker for daemons.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Context:
    out: Path  # the batch's output folder
    course: Path  # the instructor's checkout
    port: int  # a TCP listener on 127.0.0.1 in the test process
    marker: str  # put in daemons' command lines
    victim: str = "correct"  # a student whose stored result an attack rewrites


@dataclass
class Hostile:
    name: str
    notebook: dict
    expected: float
    held: str | None = None  # part of the hold reason, if it must be held


TRANSFORMER = """
def _swallow(lines):
    return ["pass\\n"]
get_ipython().input_transformers_cleanup.append(_swallow)
"""
TRANSFORMER_OBFUSCATED = """
_ip = get_ipython()
getattr(_ip, "input_" + "transformers_cleanup").append(lambda lines: ["pass\\n"])
"""
RUN_CELL = """
_ip = get_ipython()
_orig = _ip.run_cell
def _quiet(raw_cell, *args, **kwargs):
    return _orig("pass", *args, **kwargs)
_ip.run_cell = _quiet
_orig_async = _ip.run_cell_async
async def _quiet_async(raw_cell, *args, **kwargs):
    return await _orig_async("pass", *args, **kwargs)
_ip.run_cell_async = _quiet_async
"""
SHOWTRACEBACK = """
_ip = get_ipython()
_ip.showtraceback = lambda *a, **k: None
_ip.set_custom_exc((BaseException,), lambda *a, **k: None)
"""
SETTRACE = "import sys as _s\n_s.settrace(lambda *a: None)\n"
BUILTINS = "import builtins as _b\n_b.AssertionError = type('Nothing', (Exception,), {})\n"
RELOAD = "import importlib as _il\n_il.reload = lambda module: module\n"
ENCODED = "import base64 as _b64\nexec(_b64.b64decode({payload!r}).decode())\n"

READ_SECRETS = """
import glob as _glob, json as _json, os as _os, flowlib as _fl
_roots = {{_os.path.dirname(_os.path.dirname(_fl.__file__)), {course!r}, {out!r}}}
for _d in _glob.glob("/**/direct_url.json", recursive=True)[:20]:
    try:
        _roots.add(_json.load(open(_d))["url"].removeprefix("file://"))
    except Exception:
        pass
_found = []
for _root in _roots:
    for _pattern in ("solutions/*/*.ipynb", "autograder/gradebook.db", "**/gradebook.db",
                     "results/*/*.json"):
        _found += _glob.glob(_os.path.join(_root, _pattern), recursive=True)
for _path in _found:
    try:
        print("LEAK" + "ED", _path, open(_path, "rb").read(2000))
    except OSError as _e:
        print("blocked", _path, _e)
print("secrets looked for in", sorted(_roots))
"""
WRITE_COURSE = """
import os as _os, flowlib as _fl, flowlib.checks as _ch
_targets = [_ch.__file__, {course!r} + "/flowlib/checks.py",
            {course!r} + "/autograder/nbgrader_config.py",
            {course!r} + "/solutions/{nb}/{nb}.ipynb"]
for _t in _targets:
    try:
        with open(_t, "a") as _f:
            _f.write("\\n# HACKED\\n")
        print("WRO" + "TE", _t)
    except OSError as _e:
        print("blocked", _t, _e)
"""
REWRITE_OTHER = """
import glob as _glob, json as _json
for _path in _glob.glob({out!r} + "/results/*/*.json"):
    try:
        _r = _json.load(open(_path))
        for _c in _r["cells"]:
            _c["points"] = 0 if "{victim}" in _path else 100
        _json.dump(_r, open(_path, "w"))
        print("REWRO" + "TE", _path)
    except OSError as _e:
        print("blocked", _path, _e)
"""
SIGNALS = """
import os as _os, signal as _sig
_me = _os.getpid()
_pid = _os.getppid()
while _pid > 1:
    try:
        _os.kill(_pid, _sig.SIGSTOP)
    except OSError:
        pass
    _pid = int(open(f"/proc/{_pid}/stat").read().split(")")[1].split()[1])
for _p in [int(p) for p in _os.listdir("/proc") if p.isdigit()]:
    if _p not in (_me, 1):
        for _s in (_sig.SIGSTOP, _sig.SIGKILL):
            try:
                _os.kill(_p, _s)
            except OSError:
                pass
"""
LISTENER = """
import socket as _socket
for _host in ("127.0.0.1", "localhost"):
    try:
        _c = _socket.create_connection((_host, {port}), timeout=3)
        _c.sendall(b"LEAK from the kernel")
        _c.close()
    except OSError as _e:
        print("no network", _e)
"""
DAEMON = """
import subprocess as _sp, sys as _sys
_sp.Popen([_sys.executable, "-c", "import time; time.sleep(600)", {marker!r}],
          start_new_session=True)
_sp.Popen(["setsid", "sh", "-c", "sleep 600; echo {marker}"])
"""
FORKS = """
import os as _os, time as _time
_kids = []
for _ in range(300):
    try:
        _pid = _os.fork()
    except OSError:
        break
    if _pid == 0:
        _time.sleep(1)
        _os._exit(0)
    _kids.append(_pid)
print(len(_kids), "children")
for _pid in _kids:
    _os.waitpid(_pid, 0)
"""
SCRATCH = """
import os as _os, tempfile as _tf
for _where in (_tf.gettempdir(), _os.path.expanduser("~"), _os.getcwd()):
    try:
        with open(_os.path.join(_where, "big.bin"), "wb") as _f:
            for _ in range(2560):
                _f.write(b"x" * (1 << 20))
    except OSError as _e:
        print("disk limit", _where, _e)
    finally:
        try:
            _os.remove(_os.path.join(_where, "big.bin"))
        except OSError:
            pass
"""


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _cell(source: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source,
    }


def _with(nb: dict, code: str) -> dict:
    nb = copy.deepcopy(nb)
    nb["cells"].insert(0, _cell(code))
    return nb


def _stripped(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("nbgrader", None)
    return nb


def _ambiguous(nb: dict) -> dict:
    nb = _stripped(nb)
    first = next(
        i for i, c in enumerate(nb["cells"]) if "def pushforward_log_prob" in "".join(c["source"])
    )
    nb["cells"].insert(first, _cell("# my scratch work\nx_scratch = 1"))
    return nb


def _edited(inst: dict, change) -> dict:
    nb = copy.deepcopy(inst)
    change(nb["cells"])
    return nb


def _solved(inst: dict, rel: dict) -> dict:
    """What a student who solved everything hands in: the release with the instructor's
    answers in its exercise cells."""
    answers = {
        _meta(c).get("grade_id"): c["source"] for c in inst["cells"] if _meta(c).get("solution")
    }
    nb = copy.deepcopy(rel)
    for cell in nb["cells"]:
        if _meta(cell).get("solution"):
            cell["source"] = answers[_meta(cell)["grade_id"]]
    return nb


def cases(instructor: Path, release: Path, ctx: Context) -> list[Hostile]:
    """Every attack on the notebook whose instructor and release versions are given."""
    rel = json.loads(release.read_text())
    inst = _solved(json.loads(instructor.read_text()), rel)
    nb = instructor.stem
    cells = inst["cells"]
    total = sum(float(_meta(c).get("points", 0)) for c in cells if _meta(c).get("grade"))
    last = max(i for i, c in enumerate(cells) if _meta(c).get("solution"))
    after_last = sum(
        float(_meta(c).get("points", 0)) for c in cells[last:] if _meta(c).get("grade")
    )
    encoded = base64.b64encode(RUN_CELL.encode()).decode()
    colab = copy.deepcopy(inst)
    colab["metadata"] = {
        "colab": {"provenance": []},
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
    }
    conda = copy.deepcopy(inst)
    conda["metadata"]["kernelspec"] = {
        "name": "conda-env-flows-py",
        "display_name": "Python [conda env:flows]",
        "language": "python",
    }
    fmt = {
        "course": str(ctx.course),
        "out": str(ctx.out),
        "nb": nb,
        "victim": ctx.victim,
        "port": ctx.port,
        "marker": ctx.marker,
    }
    return [
        Hostile("correct", inst, total),
        Hostile("transformer", _with(rel, TRANSFORMER), 0.0, "input_transformers"),
        Hostile(
            "transformer_obfuscated",
            _with(rel, TRANSFORMER_OBFUSCATED),
            0.0,
            "input_transformers_cleanup",
        ),
        Hostile("run_cell", _with(rel, RUN_CELL), 0.0, "run_cell"),
        Hostile("encoded_run_cell", _with(rel, ENCODED.format(payload=encoded)), 0.0, "run_cell"),
        Hostile("showtraceback", _with(rel, SHOWTRACEBACK), 0.0, "showtraceback"),
        Hostile("settrace", _with(inst, SETTRACE), total, "settrace"),
        Hostile("builtins", _with(rel, BUILTINS), 0.0, "builtins"),
        Hostile("reload", _with(inst, RELOAD), total, "importlib.reload"),
        Hostile("read_secrets", _with(inst, READ_SECRETS.format(**fmt)), total),
        Hostile("write_course", _with(inst, WRITE_COURSE.format(**fmt)), total),
        Hostile("rewrite_other", _with(rel, REWRITE_OTHER.format(**fmt)), 0.0),
        Hostile("signals", _with(inst, SIGNALS), total),
        Hostile("listener", _with(inst, LISTENER.format(**fmt)), total),
        Hostile("daemon", _with(inst, DAEMON.format(**fmt)), total),
        Hostile("forks", _with(inst, FORKS), total),
        Hostile("scratch", _with(inst, SCRATCH), total),
        Hostile("stripped", _stripped(inst), total),
        Hostile("stripped_ambiguous", _ambiguous(inst), 0.0, "nbgrader metadata missing"),
        Hostile("deleted_solution", _edited(inst, lambda cs: cs.pop(last)), total - after_last),
        Hostile(
            "duplicated_solution",
            _edited(inst, lambda cs: cs.insert(last, copy.deepcopy(cs[last]))),
            total,
        ),
        Hostile("colab", colab, total),
        Hostile("conda", conda, total),
    ]


def write(found: list[Hostile], folder: Path, notebook: str) -> None:
    """``folder/NAME/NOTEBOOK.ipynb`` for every case."""
    for case in found:
        path = folder / case.name / f"{notebook}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(case.notebook, indent=1))
