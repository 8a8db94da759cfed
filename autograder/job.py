"""One grading job: autograde one submission in its own course folder.

Run as ``python -m autograder.job JOBDIR`` by :mod:`autograder.batch`, never by hand.
JOBDIR is a private nbgrader course folder prepared by the batch::

    job.json                  what to grade and the limits (JobSpec)
    gradebook.db              a copy of the notebook's template gradebook
    source/NB/                the instructor's non-notebook files
    submitted/STUDENT/NB/NB.ipynb
    lib/flowlib               a private copy of flowlib (first on PYTHONPATH)
    scratch/                  HOME, TMPDIR, caches

The process sets its resource limits (inherited by the kernel), becomes the subreaper
of everything the submission starts, runs nbgrader's autograde and generate_feedback
in-process, and writes ``result.json``: the score of every grade cell and the first
line of every error, with the nonce the batch sent on stdin. The batch reads that file
only after this process and all of its descendants are gone.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from .error_names import CELL_TIMEOUT, GRADER_ERRORS
from .job_report import GRADED, CellScore, JobReport

STARTED = time.monotonic()


@dataclass
class JobSpec:
    notebook: str
    student: str
    config_file: str
    timeout: int
    memory: int | None
    max_file_size: int | None
    notebook_timeout: int | None
    show_hidden: bool = False
    sandbox: dict | None = None  # SandboxSpec of the kernel; None: no sandbox (--no-sandbox)

    def write(self, jobdir: Path) -> None:
        (jobdir / "job.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, jobdir: Path) -> JobSpec:
        return cls(**json.loads((jobdir / "job.json").read_text()))


def job_config(spec: JobSpec, jobdir: Path):
    """The course configuration pointed at JOBDIR, with the job's limits and executor."""
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests

    from .course import Course, course_config
    from .robust_execute import RobustExecute

    config = course_config(Course(config_file=Path(spec.config_file)), jobdir)
    config.Execute.timeout = spec.timeout
    config.ExecutePreprocessor.timeout = spec.timeout
    config.Execute.interrupt_on_timeout = True
    config.Execute.error_on_timeout = {
        "ename": CELL_TIMEOUT,
        "evalue": f"the cell ran longer than {spec.timeout} s and was interrupted",
        "traceback": [
            f"CellTimeoutError: the cell ran longer than {spec.timeout} s and was interrupted"
        ],
    }
    config.RobustExecute.notebook_timeout = spec.notebook_timeout
    # Unix sockets in the job's own TMPDIR: TCP ports picked by parallel jobs can collide
    # (a kernel then dies at start), and other local users could reach them
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(
        jobdir / "ipc" / "kernel"
    )  # socket files kernel-1 ... kernel-5 (absolute)
    if spec.sandbox is not None:
        from .sandboxed_kernel import SandboxedKernelManager

        config.Execute.kernel_manager_class = SandboxedKernelManager
        config.SandboxedKernelManager.sandbox = spec.sandbox
    config.Autograde.autograde_preprocessors = [
        RobustExecute if _named(p, "Execute") else p
        for p in _configured(config, Autograde, "autograde_preprocessors")
    ]
    # feedback hides the hidden tests unless asked, whatever the course config says
    feedback = [
        p
        for p in _configured(config, GenerateFeedback, "preprocessors")
        if not _named(p, "ClearHiddenTests")
    ]
    config.GenerateFeedback.preprocessors = feedback + (
        [] if spec.show_hidden else [ClearHiddenTests]
    )
    return config


def _configured(config, cls, name: str) -> list:
    """The configured value of a list trait, else its default."""
    section = config[cls.__name__]
    return list(section[name]) if name in section else list(cls.class_traits()[name].default())


def _named(preprocessor, name: str) -> bool:
    """Whether a preprocessor (a class or a dotted name) is the one called ``name``."""
    return (preprocessor if isinstance(preprocessor, str) else preprocessor.__name__).split(".")[
        -1
    ] == name


def error_line(outputs) -> str | None:
    """'Ename: first line of the message' of the cell's error (the grader's own first)."""
    errors = [o for o in outputs if o.get("output_type") == "error"]
    errors.sort(key=lambda o: o.get("ename") not in GRADER_ERRORS)
    for out in errors:
        value = (out.get("evalue") or "").strip().splitlines()
        text = f"{out.get('ename')}: {value[0]}" if value else str(out.get("ename"))
        return text[:300]
    return None


def read_grades(spec: JobSpec, jobdir: Path) -> JobReport:
    """Scores from the job gradebook and error messages from the autograded notebook."""
    import nbformat
    from nbgrader.api import Gradebook

    nb_path = jobdir / "autograded" / spec.student / spec.notebook / f"{spec.notebook}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    messages, cell_errors = {}, []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        message = error_line(cell.get("outputs", []))
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id and cell.metadata["nbgrader"].get("grade"):
            messages[grade_id] = message
        elif message:
            cell_errors.append({"cell": grade_id or f"cell {index + 1}", "error": message})
    with Gradebook(f"sqlite:///{jobdir / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(spec.notebook, spec.notebook, spec.student)
        scores = {g.name: g.auto_score for g in submission.grades}
    cells = {name: CellScore(score, messages.get(name)) for name, score in scores.items()}
    meta = nb.metadata.get("autograder", {})
    tampering = [str(x) for x in meta.get("tampering", [])]
    report = JobReport(GRADED, cells=cells, cell_errors=cell_errors, tampering=tampering)
    report.timings["kernel_cpu"] = float(meta.get("kernel_cpu", 0.0))
    return report


def run(jobdir: Path) -> JobReport:
    from nbgrader.converters import Autograde, GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from .course import quiet_nbgrader
    from .sandbox import apply_limits, become_subreaper, kill_descendants

    spec = JobSpec.read(jobdir)
    become_subreaper()
    apply_limits(spec.memory, spec.max_file_size)
    quiet_nbgrader()
    config = job_config(spec, jobdir)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = spec.notebook
    coursedir.student_id = spec.student
    grader = Autograde(coursedir=coursedir, config=config)
    grader.force = True
    errors = _ErrorRecords()
    logging.getLogger().addHandler(errors)
    timings = {"start": time.monotonic() - STARTED}  # Python, nbgrader and config
    try:
        grader.start()
    except BaseException as err:  # noqa: BLE001 nbgrader re-raises KeyboardInterrupt
        kill_descendants()
        return JobReport.failed(errors.reason() or f"nbgrader autograde failed: {err!r}")
    finally:
        timings["autograde"] = time.monotonic() - STARTED - sum(timings.values())
    kill_descendants()
    result = read_grades(spec, jobdir)
    result.timings = {**timings, **result.timings}
    try:
        feedback = GenerateFeedback(coursedir=coursedir, config=config)
        feedback.force = True
        feedback.start()
    except Exception as err:  # noqa: BLE001 the grades stand without feedback
        result.feedback_error = str(err)[:300]
    timings["feedback"] = time.monotonic() - STARTED - sum(timings.values())
    result.timings = {**timings, **result.timings}
    return result


class _ErrorRecords(logging.Handler):
    """nbgrader logs the traceback of a failed conversion; its last line is the reason."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def reason(self) -> str | None:
        for message in reversed(self.messages):
            if "Traceback (most recent call last)" in message:
                return "nbgrader autograde failed: " + message.strip().splitlines()[-1][:300]
        return None


def main() -> int:
    nonce = sys.stdin.readline().strip()  # before any student code runs; proves the report is ours
    jobdir = Path(sys.argv[1]).resolve()
    from .course import skip_slow_imports

    skip_slow_imports()
    try:
        result = run(jobdir)
    except Exception:  # noqa: BLE001 any grader bug becomes a report
        result = JobReport.failed("grader error: " + traceback.format_exc(limit=3)[-300:])
    result.nonce = nonce
    report = jobdir / "result.json"
    report.unlink(missing_ok=True)  # never write through a link the submission left
    report.write_text(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
