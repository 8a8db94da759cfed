"""The sandbox and the verdicts (issue #17), attacked for real.

- ``test_hostile_*``: one batch of hostile submissions of notebook 01 (see
  ``tests/hostile/cases.py``) graded with ``--jobs 2``: every score exact or held with
  the right reason, nothing outside the sandbox changed, nothing leaked, the batch ends.
- ``test_sandbox_as_an_ordinary_user``: the sandbox made by a user the test creates.
- ``test_grade_refuses_without_user_namespaces``: ``grade`` inside a sandbox that may
  not create user namespaces, and with no ``bwrap`` on PATH.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import course_env

from autograder import kernel_sandbox
from autograder.collect import collect
from autograder.course import Course
from autograder.lms_export import CANVAS_COLUMNS, MOODLE_ID_COLUMN, write_exports
from autograder.metadata_repair import restore_metadata
from autograder.results import CellResult, Result
from tests.hostile import cases as hostile

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "01_change_of_variables"
COURSE_FILES = [
    "flowlib/checks.py",
    "autograder/nbgrader_config.py",
    f"solutions/{NOTEBOOK}/{NOTEBOOK}.ipynb",
]
USER = "flowlib-grade-test"
needs_sandbox = pytest.mark.skipif(kernel_sandbox.problem() is not None, reason="no sandbox here")


_env = course_env


def _digest(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


class _Listener:
    """A TCP server on 127.0.0.1 that records what reaches it."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(1000) or b"(connected)")
                except OSError:
                    self.received.append(b"(connected)")


def _marked_processes(marker: str) -> list[str]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            found.append(" ".join(proc.info["cmdline"]))
    return found


@pytest.fixture(scope="module")
def hostile_batch(tmp_path_factory):
    """All hostile submissions of notebook 01 in one batch, --jobs 2."""
    if kernel_sandbox.problem():
        pytest.skip(f"no sandbox here: {kernel_sandbox.problem()}")
    course = Course()
    root = tmp_path_factory.mktemp("hostile")
    out, subs = root / "out", root / "submissions"
    listener = _Listener()
    ctx = hostile.Context(
        out=out, course=REPO, port=listener.port, marker=f"hostile-{uuid.uuid4().hex}"
    )
    made = hostile.cases(
        course.instructor_notebook(NOTEBOOK), course.student_notebook(NOTEBOOK), ctx
    )
    hostile.write(made, subs, NOTEBOOK)
    before = _digest([REPO / f for f in COURSE_FILES])
    cmd = [
        sys.executable,
        "-m",
        "autograder",
        "grade",
        str(subs),
        "--jobs",
        "2",
        "--timeout",
        "60",
        "--memory",
        "2G",
        "--tmp-size",
        "512M",
        "--out",
        str(out),
        "--gradebook",
        str(out / "gradebook.db"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, check=False, text=True, env=_env(), cwd=REPO, timeout=1500
    )
    listener.sock.close()
    return SimpleNamespace(
        cases=made, out=out, proc=proc, before=before, listener=listener, ctx=ctx
    )


def _stored(out: Path, student: str) -> dict:
    return json.loads((out / "results" / NOTEBOOK / f"{student}.json").read_text())


def _csv(out: Path) -> list[dict]:
    with (out / "grades.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_hostile_scores_are_exact_or_held(hostile_batch):
    b = hostile_batch
    assert b.proc.returncode == 0, b.proc.stderr[-3000:]
    rows = _csv(b.out)
    for case in b.cases:
        stored = _stored(b.out, case.name)
        mine = [r for r in rows if r["student"] == case.name]
        got = sum(c["points"] for c in stored["cells"])
        assert got == case.expected, (
            case.name,
            stored["status"],
            stored["cells"],
            stored["cell_errors"],
        )
        if case.held:
            assert stored["status"].startswith("held: ") and case.held in stored["status"], (
                case.name,
                stored,
            )
            assert {float(r["points"]) for r in mine} == {0.0} and mine[0]["status"] == stored[
                "status"
            ]
        else:
            assert stored["status"] == "graded", (case.name, stored["status"])
            assert sum(float(r["points"]) for r in mine) == case.expected


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_hostile_code_changed_and_leaked_nothing(hostile_batch):
    b = hostile_batch
    assert _digest([REPO / f for f in COURSE_FILES]) == b.before  # the course checkout
    assert b.listener.received == []  # no connection reached the host's loopback
    assert _marked_processes(b.ctx.marker) == []  # the daemons died with their sandbox
    feedback = {
        p.parent.name: p.read_text() for p in (b.out / "feedback").glob(f"*/{NOTEBOOK}.html")
    }
    assert set(feedback) == {c.name for c in b.cases}
    for who, html in feedback.items():
        for secret in ("LEAKED", "WROTE", "REWROTE", "BEGIN HIDDEN", "_checks = importlib.reload"):
            assert secret not in html, (who, secret)
    assert (
        "blocked" in feedback["write_course"]
        and "Read-only file system" in feedback["write_course"]
    )
    assert "secrets looked for in" in feedback["read_secrets"]
    summary = (b.out / "summary.md").read_text()
    assert "Mean score of the graded: " in summary
    mean = float(summary.split("Mean score of the graded: ")[1].split(" /")[0])
    assert 0 <= mean <= 8
    assert "release-held settrace" in summary and "copy the student's answers" in summary


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_release_held_lets_the_grade_count(hostile_batch):
    b = hostile_batch
    cmd = [
        sys.executable,
        "-m",
        "autograder",
        "release-held",
        "settrace",
        NOTEBOOK,
        "--out",
        str(b.out),
        "--gradebook",
        str(b.out / "gradebook.db"),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, check=False, text=True, env=_env(), cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    mine = [r for r in _csv(b.out) if r["student"] == "settrace"]
    assert {r["status"] for r in mine} == {"graded"} and sum(float(r["points"]) for r in mine) == 8
    again = subprocess.run(
        cmd, capture_output=True, check=False, text=True, env=_env(), cwd=REPO, timeout=300
    )
    assert again.returncode == 2 and "is not held" in again.stderr


# --- who can make a sandbox


SANDBOX_PROBE = r"""
import os, socket, sys
sys.path.insert(0, {repo!r})
from autograder import kernel_sandbox as ks
spec = ks.SandboxSpec()
code = '''
import os, socket
seen = {{p: os.path.exists(p) for p in ({home!r}, {repo!r} + "/solutions", "/work", "/root")}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3); net = "open"
except OSError:
    net = "closed"
print(os.getpid(), sorted(p for p, s in seen.items() if s), net, os.access("/tmp", os.W_OK))
'''
import subprocess
cmd = ks.command(spec, ["/usr/bin/python3", "-c", code])
print(subprocess.run(cmd, capture_output=True, check=False, text=True).stdout)
"""


def _ordinary_user() -> str:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", USER], check=True)
    return USER


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="creates a user: needs root"
)
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs the system python3")
def test_sandbox_as_an_ordinary_user():
    user = _ordinary_user()
    home = pwd.getpwnam(user).pw_dir
    listener = _Listener()
    script = SANDBOX_PROBE.format(repo=str(REPO), home=home, port=listener.port)
    check = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "/usr/bin/python3",
            "-c",
            (
                f"import sys; sys.path.insert(0, {str(REPO)!r}); "
                "from autograder import kernel_sandbox; print(kernel_sandbox.problem())"
            ),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    if check.stdout.strip() != "None":  # no unprivileged user namespaces here: the refusal instead
        assert "--no-sandbox" in kernel_sandbox.refusal(check.stdout.strip())
        pytest.skip(f"unprivileged user namespaces are not allowed here: {check.stdout.strip()}")
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", script],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    listener.sock.close()
    assert proc.stdout.split() == ["2", "[]", "closed", "True"], proc.stdout + proc.stderr
    assert listener.received == []


@pytest.mark.slow
@needs_sandbox
def test_grade_refuses_without_user_namespaces(tmp_path):
    """``grade`` run where user namespaces cannot be made (inside a sandbox that forbids
    them): exit status 2 and the message names the cause and both ways out."""
    inner = kernel_sandbox.SandboxSpec(read_only=[*kernel_sandbox.python_paths(), str(REPO)])
    cmd = kernel_sandbox.command(
        inner,
        [
            sys.executable,
            "-m",
            "autograder",
            "--course",
            str(REPO),
            "grade",
            str(REPO / "notebooks"),
            "--out",
            "/tmp/out",
            "--no-gradebook",
        ],
    )
    cmd[cmd.index("--chdir") + 1] = str(REPO)
    proc = subprocess.run(cmd, capture_output=True, check=False, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot sandbox the submissions: bwrap cannot create the namespaces" in proc.stderr
    assert "--no-sandbox" in proc.stderr and "user namespaces" in proc.stderr

    env = {**os.environ, "PATH": str(tmp_path)}  # no bwrap on PATH
    probe = subprocess.run(
        [sys.executable, "-c", "from autograder import kernel_sandbox as k; print(k.problem())"],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert "apt-get install bubblewrap" in probe.stdout


# --- metadata and exports


def test_stripped_metadata_is_restored_or_refused(tmp_path):
    course = Course()
    inst = json.loads(course.instructor_notebook(NOTEBOOK).read_text())
    release = course.student_notebook(NOTEBOOK)
    ctx = hostile.Context(tmp_path, REPO, 0, "x")
    made = {c.name: c for c in hostile.cases(course.instructor_notebook(NOTEBOOK), release, ctx)}
    hostile.write([made["stripped"], made["stripped_ambiguous"]], tmp_path, NOTEBOOK)
    fixed = restore_metadata(
        tmp_path / "stripped" / f"{NOTEBOOK}.ipynb", release, tmp_path / "fixed"
    )
    ids = [
        (c.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        for c in json.loads(fixed.read_text())["cells"]
    ]
    want = [(c.get("metadata", {}).get("nbgrader") or {}).get("grade_id") for c in inst["cells"]]
    assert [i for i in ids if i] == [i for i in want if i]
    assert (
        restore_metadata(
            tmp_path / "stripped_ambiguous" / f"{NOTEBOOK}.ipynb", release, tmp_path / "x"
        )
        is None
    )


def test_collect_keeps_the_lms_ids(tmp_path):
    names = {
        f"jdoe_12345_67890_{NOTEBOOK}.ipynb": ("jdoe", "canvas", "12345"),
        f"Jane Doe_424242_assignsubmission_file_{NOTEBOOK}.ipynb": ("424242", "moodle", "424242"),
        f"Bo Li_777_assignsubmission_file_/{NOTEBOOK}.ipynb": ("777", "moodle", "777"),
        f"alice/{NOTEBOOK}.ipynb": ("alice", None, None),
    }
    for name in names:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text("{}")
    found = collect([tmp_path / "in"], [NOTEBOOK], tmp_path / "unpacked")
    assert sorted((s.student, s.lms, s.lms_id) for s in found.submissions) == sorted(names.values())


def test_canvas_and_moodle_exports_have_their_columns(tmp_path):
    def result(student, lms, lms_id, points, status="graded"):
        cells = [CellResult("a", points, 2.0), CellResult("b", 0.0, 3.0)]
        return Result(student, NOTEBOOK, status, cells, lms=lms, lms_id=lms_id)

    results = [
        result("jdoe", "canvas", "12345", 2.0),
        result("kim", "canvas", "777", 2.0, "held: patches x"),
        result("424242", "moodle", "424242", 1.5),
        result("alice", "", "", 2.0),
    ]
    canvas, moodle = write_exports(results, tmp_path)
    rows = list(csv.reader(canvas.open()))
    assert rows[0] == CANVAS_COLUMNS + [NOTEBOOK]
    assert rows[1][0] == "Points Possible" and rows[1][-1] == "5"
    assert rows[2:] == [["jdoe", "12345", "", "", "", "2"], ["kim", "777", "", "", "", "0"]]
    rows = list(csv.reader(moodle.open()))
    assert rows == [[MOODLE_ID_COLUMN, NOTEBOOK], ["424242", "1.5"]]


def test_pass_token_split_over_two_messages_still_counts():
    """ipykernel may send one print in two stream messages (seen under load)."""
    from nbformat import NotebookNode as Node

    from autograder import pass_tokens

    def cell(*texts, name="stdout"):
        c = Node(
            cell_type="code", source="x = 1", metadata=Node(nbgrader=Node(grade=True)), outputs=[]
        )
        token = pass_tokens.arm(c)
        c.outputs = [
            Node(output_type="stream", name=name, text=t.format(token=token)) for t in texts
        ]
        return c, token

    c, token = cell("hello\n{token}", "\n")
    c.outputs[0].text, c.outputs[1].text = "hello\n" + token[:12], token[12:] + "\n"
    assert pass_tokens.disarm(c, token) and c.source == "x = 1"
    assert [o.text for o in c.outputs] == ["hello\n"]
    c, token = cell("{token}\n", name="stderr")  # only stdout counts
    assert not pass_tokens.disarm(c, token)
    c, token = cell("no token here\n")
    assert not pass_tokens.disarm(c, token)
    pass_tokens.fail_unproven(c)
    assert c.outputs[-1].ename == "NoPassSignal"
