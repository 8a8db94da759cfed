"""The autograder (issue #6) and the CI checks of the course notebooks (issue #5).

Fast tests cover importing submissions, scoring and reports. The slow ones grade real
submissions with nbgrader:

- ``test_batch_*``: one batch of synthetic submissions (see ``autograder.synthetic``)
  of the fastest course notebook, graded with ``--jobs 2``, every score checked exactly;
  then graded again, and once more with one student's resubmission;
- ``test_monkeypatched_checks_earn_nothing``: the tiny fixture notebook in
  ``tests/autograder_fixtures``, whose visible test only calls ``flowlib.checks``;
- ``test_selfcheck_all_notebooks`` and ``test_release_is_up_to_date``: every notebook
  in ``solutions/``.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import course_env

from autograder import synthetic
from autograder.batch import Options
from autograder.cli import main
from autograder.collect import collect
from autograder.course import Course, GradingError
from autograder.job_report import JobReport
from autograder.release import check_release, differences, write_release
from autograder.results import Result
from autograder.review import flags, notebook_problem
from autograder.sandbox import parse_size
from autograder.selfcheck import selfcheck
from autograder.templates import GradeCell, Template, template

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "autograder_fixtures"
E2E_NOTEBOOK = "01_change_of_variables"  # the fastest course notebook
NOTEBOOKS = sorted(
    p.parent.name for p in (REPO / "solutions").glob("*/*.ipynb") if p.stem == p.parent.name
)
NBS = ["01_change_of_variables", "02_dequantization"]


_data_env = course_env


def _cli(course: Course, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "autograder", "--course", str(course.root), *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, check=False, text=True, env=_data_env(), cwd=REPO, timeout=1200
    )


def _grades(out: Path) -> list[dict]:
    with (out / "grades.csv").open() as f:
        return list(csv.DictReader(f))


def _totals(rows: list[dict]) -> dict[str, float]:
    totals = defaultdict(float)
    for row in rows:
        totals[row["student"]] += float(row["points"])
    return dict(totals)


def _fixture_course(root: Path) -> Course:
    """A course folder holding only the tiny fixture notebook, built like the real ones."""
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import build_notebooks
    finally:
        sys.path.pop(0)
    _, text = build_notebooks.build(FIXTURES / "00_fixture.py")
    dest = root / "solutions" / "00_fixture" / "00_fixture.ipynb"
    dest.parent.mkdir(parents=True)
    dest.write_text(text)
    course = Course(root=root)
    write_release(course, None, log=lambda *a: None)
    return course


# --- importing submissions


def _notebook_bytes(tag: str) -> bytes:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": "code",
                    "source": tag,
                    "metadata": {},
                    "outputs": [],
                    "execution_count": None,
                }
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    ).encode()


def test_collect_accepts_every_documented_layout(tmp_path):
    files = {
        "folder/alice/01_change_of_variables.ipynb": "alice",
        "folder/submitted/bob/02_dequantization/02_dequantization.ipynb": "bob",
        "folder/submitted/bob/02_dequantization/timestamp.txt": None,
        "folder/carol_02_dequantization.ipynb": "carol",
        "folder/Dan Brown_4242_assignsubmission_file_/01_change_of_variables.ipynb": "4242",
        "folder/eve/homework.ipynb": None,
        "folder/eve/notes.txt": None,
        "folder/01_change_of_variables.ipynb": None,
        "folder/.ipynb_checkpoints/x-checkpoint.ipynb": None,
    }
    for name, tag in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            b"2026-01-05 10:00:00" if name.endswith("timestamp.txt") else _notebook_bytes(str(tag))
        )
    with zipfile.ZipFile(tmp_path / "canvas.zip", "w") as zf:
        zf.writestr("jdoe_12345_67890_01_change_of_variables.ipynb", _notebook_bytes("old"))
        zf.writestr("jdoe_late_12345_67999_01_change_of_variables-1.ipynb", _notebook_bytes("new"))
        zf.writestr("smithjo_111_1_02_dequantization.ipynb", _notebook_bytes("smith 111"))
        zf.writestr("smithjo_222_2_02_dequantization.ipynb", _notebook_bytes("smith 222"))
        zf.writestr(
            "Jane Doe_777_assignsubmission_file_02_dequantization (2).ipynb",
            _notebook_bytes("jane"),
        )

    found = collect([tmp_path / "folder", tmp_path / "canvas.zip"], NBS, tmp_path / "unpacked")

    got = {
        (s.student, s.notebook): json.loads(s.path.read_text())["cells"][0]["source"]
        for s in found.submissions
    }
    assert got == {
        ("alice", NBS[0]): "alice",
        ("bob", NBS[1]): "bob",
        ("carol", NBS[1]): "carol",
        ("4242", NBS[0]): "4242",
        ("jdoe", NBS[0]): "new",
        ("smithjo_111", NBS[1]): "smith 111",
        ("smithjo_222", NBS[1]): "smith 222",
        ("777", NBS[1]): "jane",
    }
    assert (
        next(s for s in found.submissions if s.student == "bob").timestamp == "2026-01-05 10:00:00"
    )
    why = {Path(x.origin).name: x.reason for x in found.rejected}
    assert "does not name a course notebook" in why["homework.ipynb"]
    assert why["notes.txt"].startswith("not a notebook")
    assert why["01_change_of_variables.ipynb"].startswith("cannot tell whose file")
    assert why["x-checkpoint.ipynb"].startswith("ignored")
    assert why["jdoe_12345_67890_01_change_of_variables.ipynb"].startswith("superseded by")
    assert len(found.rejected) == 5  # nothing dropped silently


def test_collect_suggests_the_notebook_a_typo_meant(tmp_path):
    path = tmp_path / "mallory" / "01_change_of_variable.ipynb"
    path.parent.mkdir()
    path.write_bytes(_notebook_bytes("x"))
    inner = (
        tmp_path / "02_dequantization" / "02_dequantization.ipynb"
    )  # submitted/alice/ given instead of submitted/
    inner.parent.mkdir()
    inner.write_bytes(_notebook_bytes("y"))
    found = collect([tmp_path], NBS, tmp_path / "u")
    assert not found.submissions
    why = {Path(x.origin).name: x for x in found.rejected}
    assert "did you mean 01_change_of_variables.ipynb" in why["01_change_of_variable.ipynb"].reason
    assert why["01_change_of_variable.ipynb"].student == "mallory"
    assert "named after the notebook" in why["02_dequantization.ipynb"].reason


def test_bad_input_gives_a_clear_error(tmp_path, capsys, monkeypatch):
    with pytest.raises(GradingError, match="no such folder"):
        collect([tmp_path / "missing"], NBS, tmp_path / "u")
    grade_missing = ["grade", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]
    assert main([*grade_missing, "--no-gradebook"]) == 2
    assert "no such folder" in capsys.readouterr().err
    with monkeypatch.context() as m:  # no bubblewrap on the PATH: the typo is still named first
        m.setenv("PATH", str(tmp_path))
        assert main([*grade_missing, "--no-gradebook"]) == 2
        assert "no such folder" in capsys.readouterr().err
    if NOTEBOOKS:
        assert main(["selfcheck", NOTEBOOKS[0][:-1]]) == 2
        assert f"did you mean {NOTEBOOKS[0]}" in capsys.readouterr().err
    assert main(["--course", str(tmp_path / "nowhere"), "release", "--check"]) == 2


def test_sizes_parse():
    assert (
        parse_size("2G") == 2 << 30 and parse_size("512M") == 512 << 20 and parse_size("100") == 100
    )
    with pytest.raises(ValueError):
        parse_size("lots")


# --- checks before grading, scoring


def test_notebook_problem_and_flags(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": [')
    assert notebook_problem(bad).startswith("not a valid notebook: not valid JSON")
    bad.write_text('{"hello": 1}')
    assert notebook_problem(bad).startswith("not a valid notebook")
    good = tmp_path / "good.ipynb"
    good.write_bytes(
        _notebook_bytes(
            "import flowlib.checks\nflowlib.checks.check_flow = lambda *a: {}\n"
            "import os; os._exit(1)"
        )
    )
    assert notebook_problem(good) is None
    assert flags(good) == ["exits the kernel", "patches flowlib.checks"]


def test_result_from_job_trusts_only_the_template():
    t = Template(
        "nb", Path("."), (GradeCell("a", 1.0), GradeCell("b", 2.0), GradeCell("c", 3.0)), "f"
    )
    job = {
        "status": "graded",
        "cells": {
            "a": {"score": 1000, "error": None},
            "b": {"score": 0, "error": "Boom: x"},
            "z": {"score": 5},
        },
    }
    r = Result.from_job("s", "nb", t, JobReport.from_json(json.dumps(job)))
    assert [(c.id, c.points, c.error) for c in r.cells] == [
        ("a", 1.0, None),
        ("b", 0.0, "Boom: x"),
        ("c", 0.0, "missing from the graded notebook"),
    ]
    failed = Result.from_job("s", "nb", t, JobReport.failed("it broke"))
    assert failed.status == "not graded: it broke" and failed.points == 0 and failed.max_points == 6
    malformed = JobReport.from_json(json.dumps({"status": "graded", "cells": [["a", 1]]}))
    assert not malformed.graded and "malformed" in malformed.reason
    held = Result.from_job(
        "s", "nb", t, JobReport.from_json(json.dumps({**job, "tampering": ["patches x"]}))
    )
    assert held.status == "held: patches x" and held.points == 1 and held.awarded == 0


def test_release_differences_name_the_cell():
    fresh = {
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "id": "x",
                "source": "a = 1",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
    }
    stale = json.loads(json.dumps(fresh))
    stale["cells"][0]["execution_count"] = 3  # volatile: ignored
    assert differences(fresh, stale) == []
    stale["cells"][0]["source"] = ["a = 2"]
    assert differences(fresh, stale) == ["cell 1 (x): source differs"]


@pytest.mark.slow
def test_synthetic_expectations_follow_the_notebook_order(tmp_path):
    course = _fixture_course(tmp_path / "course")
    made = {
        c.name: c.expected
        for c in synthetic.cases(
            course.instructor_notebook("00_fixture"), course.student_notebook("00_fixture")
        )
    }
    assert (
        made["correct"] == 3
        and made["release"] == 0
        and made["partial"] == 1
        and made["os_exit"] == 1
    )
    assert (
        made["invalid_json"] == synthetic.NOT_GRADED
        and made["wrong_name"] == synthetic.NOT_ATTRIBUTED
    )
    assert check_release(course, None) == {"00_fixture": []}
    nb = course.student_notebook("00_fixture")
    nb.write_text(nb.read_text().replace("square(3) == 9", "square(3) == 10"))
    assert any("source differs" in d for d in check_release(course, None)["00_fixture"])


# --- grading a batch end to end


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every synthetic submission of the fastest course notebook, graded in one batch."""
    course, notebook = Course(), E2E_NOTEBOOK
    if E2E_NOTEBOOK not in NOTEBOOKS:  # before the course notebook exists: the fixture
        course, notebook = _fixture_course(tmp_path_factory.mktemp("course")), "00_fixture"
    t = template(course, notebook, course.template_cache)
    cases = synthetic.cases(course.instructor_notebook(notebook), t.release_notebook)
    root = tmp_path_factory.mktemp("batch")
    subs, out = root / "submissions", root / "out"
    synthetic.write(cases, subs)
    proc = _cli(
        course,
        "grade",
        subs,
        "--jobs",
        2,
        "--timeout",
        60,
        "--memory",
        "2G",
        "--out",
        out,
        "--gradebook",
        out / "gradebook.db",
    )
    cells = json.loads(course.instructor_notebook(notebook).read_text())["cells"]
    last_exercise = [
        c["metadata"]["nbgrader"]["grade_id"]
        for c in cells
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    ][-1]
    return SimpleNamespace(
        course=course,
        notebook=notebook,
        template=t,
        cases=cases,
        root=root,
        out=out,
        proc=proc,
        last_exercise=last_exercise,
    )


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_batch_grades_every_submission_exactly(batch):
    assert batch.proc.returncode == 0, batch.proc.stderr[-3000:]
    rows = _grades(batch.out)
    totals, status = _totals(rows), {r["student"]: r["status"] for r in rows}
    errors = defaultdict(list)
    for r in rows:
        if r["message"]:
            errors[r["student"]].append(f"{r['exercise']}: {r['message']}")
    for case in batch.cases:
        if isinstance(case.expected, float):
            assert status[case.name] == "graded", (case.name, status[case.name])
            assert totals[case.name] == case.expected, (
                case.name,
                errors[case.name],
                batch.proc.stdout[-3000:],
            )
    assert totals["correct"] == batch.template.max_points > 0

    def error_in_last_exercise(student):
        result = json.loads(
            (batch.out / "results" / batch.notebook / f"{student}.json").read_text()
        )
        return {e["cell"]: e["error"] for e in result["cell_errors"]}[batch.last_exercise]

    assert error_in_last_exercise("infinite_loop").startswith("CellTimeoutError")
    assert "allocate memory" in error_in_last_exercise(
        "memory_hog"
    )  # the cap stopped 8 GB; the machine has room
    assert error_in_last_exercise("os_exit").startswith("KernelDied")
    assert error_in_last_exercise("sys_exit").startswith("SystemExit")


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_batch_reports_what_it_could_not_grade(batch):
    with (batch.out / "import_report.csv").open() as f:
        outcome = {r["student"]: r["outcome"] for r in csv.DictReader(f)}
    assert set(outcome) == {c.name for c in batch.cases}  # one row for every file
    assert outcome["invalid_json"].startswith("not graded: not a valid notebook")
    assert "does not name a course notebook" in outcome["wrong_name"]
    assert {r["status"] for r in _grades(batch.out) if r["student"] == "invalid_json"} == {
        outcome["invalid_json"]
    }
    summary = (batch.out / "summary.md").read_text()
    assert f"## {batch.notebook}" in summary and "| exercise | points | passed |" in summary
    assert (
        "a cell timeout: 1" in summary
        and "a kernel death: 1" in summary
        and "homework.ipynb" in summary
    )
    assert "review **monkeypatch** by hand: patches flowlib.checks" in summary


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_batch_feedback_and_gradebook(batch):
    from nbgrader.api import Gradebook

    students = {c.name for c in batch.cases} - {"wrong_name"}
    for student in students:
        html = (batch.out / "feedback" / student / f"{batch.notebook}.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html
    points = {(r["student"], r["exercise"]): float(r["points"]) for r in _grades(batch.out)}
    with Gradebook(f"sqlite:///{batch.out / 'gradebook.db'}") as gb:
        for student in students:
            submitted = gb.find_submission_notebook(batch.notebook, batch.notebook, student)
            assert {(student, g.name): g.auto_score for g in submitted.grades} == {
                k: v for k, v in points.items() if k[0] == student
            }


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_batch_regrade_is_idempotent_and_replaces_only_the_resubmission(batch):
    before = (batch.out / "grades.csv").read_text()
    again = _cli(
        batch.course,
        "grade",
        batch.root / "submissions",
        "--jobs",
        2,
        "--timeout",
        60,
        "--memory",
        "2G",
        "--out",
        batch.out,
        "--gradebook",
        batch.out / "gradebook.db",
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("unchanged, grade kept") == len(batch.cases) - 1  # all but wrong_name
    assert (batch.out / "grades.csv").read_text() == before

    resubmitted = batch.root / "resubmission"
    synthetic.write(
        [c for c in batch.cases if c.name == "correct"],
        resubmitted,
        students={"correct": "release"},
    )
    third = _cli(
        batch.course,
        "grade",
        resubmitted,
        "--timeout",
        60,
        "--memory",
        "2G",
        "--out",
        batch.out,
        "--gradebook",
        batch.out / "gradebook.db",
    )
    assert third.returncode == 0, third.stderr[-2000:]
    old, new = list(csv.DictReader(before.splitlines())), _grades(batch.out)
    assert [r for r in new if r["student"] != "release"] == [
        r for r in old if r["student"] != "release"
    ]
    assert _totals(new)["release"] == batch.template.max_points


@pytest.mark.slow
def test_fixture_monkeypatch_kernel_death_in_a_test_and_loops(tmp_path):
    """On the fixture notebook, whose visible test of Scale only calls flowlib.checks:
    patching the checks fools the visible test but not the hidden one (which reloads
    flowlib.checks); ``os._exit`` inside Scale kills the kernel in the test cell, which
    scores 0 while the cells above keep their points; a print loop is cut at 1 MB of
    output and timed out; a loop that ignores SIGINT gets a fresh kernel."""
    course = _fixture_course(tmp_path / "course")
    cases = synthetic.cases(
        course.instructor_notebook("00_fixture"), course.student_notebook("00_fixture"), extra=True
    )
    names = ("monkeypatch", "os_exit_inside", "print_loop", "deaf_loop")
    synthetic.write([c for c in cases if c.name in names], tmp_path / "subs")
    out = tmp_path / "out"
    proc = _cli(
        course,
        "grade",
        tmp_path / "subs",
        "--jobs",
        2,
        "--timeout",
        20,
        "--memory",
        "2G",
        "--out",
        out,
        "--no-gradebook",
        "--show-hidden",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _grades(out)
    assert _totals(rows) == dict.fromkeys(names, 1.0)  # square: 1 point; Scale: 0 of 2
    message = {(r["student"], r["exercise"]): r["message"] for r in rows}
    assert message["os_exit_inside", "nb00_scale_tests"].startswith("KernelDied")
    deaf = json.loads((out / "results" / "00_fixture" / "deaf_loop.json").read_text())
    assert deaf["cell_errors"][0]["error"].startswith("CellTimeoutError")
    assert (out / "feedback" / "print_loop" / "00_fixture.html").stat().st_size < 3 << 20
    html = (out / "feedback" / "monkeypatch" / "00_fixture.html").read_text()
    assert "Exercise 0.2 (scale): all visible checks passed" in html  # the visible check was fooled
    assert "BEGIN HIDDEN TESTS" in html  # --show-hidden


# --- CI checks of the course notebooks


@pytest.mark.slow
@pytest.mark.grading_e2e
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_selfcheck_all_notebooks(notebook, monkeypatch):
    """Instructor version: full marks; unmodified student version: zero; no crash."""
    for key, value in _data_env().items():
        monkeypatch.setenv(key, value)
    problems = selfcheck(Course(), [notebook], Options(jobs=2), log=lambda *a: None)
    assert problems == {notebook: []}, "\n".join(problems[notebook])


@pytest.mark.slow
@pytest.mark.grading_e2e
def test_data_behind_a_symbolic_link_reaches_the_sandboxed_kernel(tmp_path, monkeypatch, data_root):
    """The sandbox mounts the data at its resolved path; FLOWLIB_DATA through a link (a
    shared folder linked into a home, say) must still find it there. Notebook 02's graded
    test needs MNIST: it scored 0 with "name 'mnist' is not defined" before the fix."""
    link = tmp_path / "linked-data"
    link.symlink_to(data_root, target_is_directory=True)
    monkeypatch.setenv("FLOWLIB_DATA", str(link))
    problems = selfcheck(Course(), ["02_dequantization"], Options(jobs=2), log=lambda *a: None)
    assert problems == {"02_dequantization": []}, "\n".join(problems["02_dequantization"])


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_release_is_up_to_date(notebook):
    diffs = check_release(Course(), [notebook])[notebook]
    assert not diffs, (
        f"notebooks/{notebook} is out of date ({'; '.join(diffs)}): "
        f"run `python -m autograder release {notebook}`"
    )
