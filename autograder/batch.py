"""Grade a batch of submissions: collect, run jobs in parallel, merge serially.

Each submission is graded by its own process (:mod:`autograder.job`) in its own
temporary course folder, with its own copy of the template gradebook, its own copy
of ``flowlib`` and its own HOME. Nothing a job writes is seen by another. This
process alone writes the results, the course gradebook, the CSV and the feedback,
one finished job at a time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from . import gradebook as course_gradebook
from . import kernel_sandbox
from .collect import Collection, Rejected, Submission, check_sources, collect
from .course import Course, GradingError, load_config
from .held import held_feedback
from .job import JobSpec
from .job_report import JobReport
from .lms_export import write_exports
from .metadata_repair import restore_metadata
from .results import (
    METADATA_MISSING,
    Result,
    ResultStore,
    summary,
    write_grades_csv,
    write_import_report,
)
from .review import course_cells, flags, holds, notebook_problem
from .sandbox import kill_marked, scrubbed_environment, tree_digest
from .templates import Template, template


@dataclass
class Options:
    timeout: int | None = None  # seconds per cell; None: the course config's Execute.timeout
    memory: int | None = 4 << 30  # bytes of private memory per notebook (RLIMIT_DATA)
    jobs: int = 1
    max_file_size: int = 1 << 30  # bytes per file a submission writes (RLIMIT_FSIZE)
    submission_timeout: int = 1800  # seconds for one submission, all included
    show_hidden: bool = False  # feedback shows hidden tests
    force: bool = False  # grade again even when the file and settings did not change
    keep_work: bool = False  # keep the job folders (their path is printed)
    data_cache: Path | None = None  # shared FLOWLIB_CACHE; by default each job has its own
    work_dir: Path | None = None  # where job folders go (default: the system's temp folder)
    sandbox: bool = True  # each kernel in its own namespaces (autograder.kernel_sandbox)
    processes: int = 256  # processes and threads per sandbox
    tmp_size: int = 1 << 30  # bytes of the sandbox's private /tmp (its HOME and working folder)


@dataclass
class BatchReport:
    results: list[Result] = field(default_factory=list)  # this run's, reused ones included
    rejected: list[Rejected] = field(default_factory=list)
    reused: int = 0
    seconds: float = 0.0


def grade(
    course: Course,
    sources: list[Path],
    out: Path,
    options: Options,
    notebooks: list[str] | None = None,
    gradebook: Path | None = None,
    log=print,
) -> BatchReport:
    """Grade every submission found in ``sources``; write everything under ``out``.

    ``notebooks`` limits grading to those notebooks; ``gradebook`` is the course
    gradebook to update (None: leave it alone).
    """
    start = time.monotonic()
    known = course.notebooks()
    wanted = [course.check_notebook(n) for n in notebooks] if notebooks else known
    if options.jobs < 1:
        raise GradingError("--jobs must be at least 1")
    timeout = options.timeout or int(load_config(course).Execute.timeout or 300)
    check_sources(sources)  # a mistyped path is reported before anything else is asked for
    if options.sandbox:
        try:
            kernel_sandbox.require()
        except kernel_sandbox.SandboxUnavailable as err:
            raise GradingError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flowlib-grade-", dir=options.work_dir))
    report = BatchReport()
    try:
        found = collect(sources, known, work / "unpacked")
        _drop_unwanted(found, wanted)
        report.rejected = found.rejected
        cache = _template_cache(course, out)
        templates = {
            nb: template(course, nb, cache)
            for nb in sorted({s.notebook for s in found.submissions})
        }
        if gradebook:
            for t in templates.values():
                course_gradebook.install_assignment(gradebook, t)
        merger = _Merger(out, gradebook, report, len(found.submissions), log)
        todo = _triage(found, templates, merger, _settings_of(timeout, options), work, options)
        _run_jobs(_JobRunner(course, work, options, timeout), todo, merger, options)
        merger.write_reports(found)
    finally:
        if options.keep_work:
            log(f"job folders kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.monotonic() - start
    return report


def _triage(
    found: Collection, templates: dict, merger: _Merger, settings, work: Path, options: Options
):
    """Keep unchanged grades, settle what cannot run, and list the jobs to run."""
    todo = []
    for s in found.submissions:
        t = templates[s.notebook]
        exempt = course_cells(t.release_notebook)
        extra = {
            "origin": s.origin,
            "sha256": s.sha256,
            "settings": settings(t),
            "flags": flags(s.path, exempt),
            "sandboxed": options.sandbox,
            "lms_id": s.lms_id or "",
            "lms": s.lms or "",
        }
        previous = merger.store.get(s.notebook, s.student)
        if (
            previous
            and (previous.sha256, previous.settings) == (extra["sha256"], extra["settings"])
            and not options.force
        ):
            merger.reuse(previous, s)
        elif problem := notebook_problem(s.path):
            merger.finish(Result.not_graded(s.student, s.notebook, t, problem, **extra), s, None)
        elif (
            repaired := restore_metadata(s.path, t.release_notebook, work / "repaired" / s.student)
        ) is None:
            merger.finish(
                Result.held_ungraded(s.student, s.notebook, t, METADATA_MISSING, **extra), s, None
            )
        else:
            s.path = repaired
            todo.append((s, t, {**extra, "held": holds(s.path, exempt)}))
    return todo


def _run_jobs(runner: _JobRunner, todo: list, merger: _Merger, options: Options) -> None:
    """Run the jobs ``options.jobs`` at a time; merge each result as soon as it is in."""
    pool = ThreadPoolExecutor(max_workers=options.jobs)
    try:
        futures = {pool.submit(runner.run, s, t): (s, t, extra) for s, t, extra in todo}
        for future in as_completed(futures):
            s, t, extra = futures[future]
            job, seconds, jobdir = future.result()
            merger.finish(
                Result.from_job(s.student, s.notebook, t, job, seconds=round(seconds, 1), **extra),
                s,
                jobdir,
            )
            if not options.keep_work:
                shutil.rmtree(jobdir, ignore_errors=True)
    except BaseException:  # Ctrl-C or a grader bug: stop the running jobs too
        pool.shutdown(wait=False, cancel_futures=True)
        runner.stop_all()
        raise
    pool.shutdown()


def _template_cache(course: Course, out: Path) -> Path:
    """The course's template cache, or one under ``out`` if the course is read-only."""
    cache = course.template_cache
    existing = next(p for p in (cache, *cache.parents) if p.exists())
    return cache if os.access(existing, os.W_OK) else out / ".templates"


def _drop_unwanted(found: Collection, wanted: list[str]) -> None:
    for s in [s for s in found.submissions if s.notebook not in wanted]:
        found.submissions.remove(s)
        found.rejected.append(
            Rejected(s.origin, "skipped: notebook not selected (--notebook)", s.student, s.notebook)
        )


def _settings_of(timeout: int, options: Options):
    return lambda t: _settings(t, timeout, options)


def _settings(t: Template, timeout: int, options: Options) -> str:
    return (
        f"{t.fingerprint} timeout={timeout} memory={options.memory} hidden={options.show_hidden} "
        f"sandbox={options.sandbox}"
    )


class _Merger:
    """Serial writes of finished results: store, course gradebook, feedback, log."""

    def __init__(self, out: Path, gradebook: Path | None, report: BatchReport, total: int, log):
        self.out, self.gradebook, self.report, self.total, self.log = (
            out,
            gradebook,
            report,
            total,
            log,
        )
        self.store = ResultStore(out)

    def reuse(self, result: Result, submission: Submission) -> None:
        if self.gradebook:  # a run stopped half-way may have stored it without recording it
            course_gradebook.record(self.gradebook, result, submission.timestamp)
        self.report.reused += 1
        self.report.results.append(result)
        self._log(result, "unchanged, grade kept")

    def finish(self, result: Result, submission: Submission, jobdir: Path | None) -> None:
        self.store.put(result)
        if self.gradebook:
            course_gradebook.record(self.gradebook, result, submission.timestamp)
        self._feedback(result, jobdir)
        self._keep_log(result, jobdir)
        self.report.results.append(result)
        self._log(result, f"{result.seconds:.0f} s")

    def _log(self, result: Result, note: str) -> None:
        score = f"{result.points:g}/{result.max_points:g}" if result.graded else result.status
        count = f"[{len(self.report.results)}/{self.total}]"
        self.log(f"{count} {result.student} {result.notebook}: {score} ({note})")

    def _keep_log(self, result: Result, jobdir: Path | None) -> None:
        """The job's log of a submission that was not graded, for the instructor."""
        log = jobdir / "job.log" if jobdir else None
        dest = self.out / "logs" / result.notebook / f"{result.student}.log"
        if result.graded or not (log and log.is_file() and not log.is_symlink()):
            dest.unlink(missing_ok=True)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        with log.open("rb") as f:
            dest.write_bytes(f.read(1 << 20))

    def _feedback(self, result: Result, jobdir: Path | None) -> None:
        dest = self.out / "feedback" / result.student / f"{result.notebook}.html"
        dest.parent.mkdir(parents=True, exist_ok=True)
        made = (
            jobdir
            and jobdir / "feedback" / result.student / result.notebook / f"{result.notebook}.html"
        )
        usable = made and made.is_file() and made.resolve().is_relative_to(jobdir.resolve())
        kept = held_feedback(self.out, result.student, result.notebook)
        kept.unlink(missing_ok=True)
        if usable and result.graded:
            shutil.copyfile(made, dest)
            return
        if usable and result.is_held:  # for the instructor; it is handed back on release
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(made, kept)
        dest.write_text(_plain_feedback(result))

    def write_reports(self, found: Collection) -> None:
        results = self.store.all()
        write_grades_csv(results, self.out / "grades.csv")
        write_exports(results, self.out)
        (self.out / "summary.md").write_text(summary(results, found.rejected))
        rows = [(r.origin, r.student, r.notebook, r.status) for r in self.report.results]
        rows += [(x.origin, x.student or "", x.notebook or "", x.reason) for x in found.rejected]
        write_import_report(rows, self.out / "import_report.csv")


def _plain_feedback(result: Result) -> str:
    rows = "".join(
        f"<tr><td>{escape(c.id)}</td><td>{result.cell_awarded(c):g} / {c.max_points:g}</td></tr>"
        for c in result.cells
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{escape(result.notebook)}</title></head><body>"
        f"<h1>{escape(result.notebook)}: {escape(result.student)}</h1>"
        f"<p>{escape(result.status)}</p>"
        f"<table>{rows}</table></body></html>\n"
    )


class _JobRunner:
    """Prepares a job folder and runs :mod:`autograder.job` in it, with a wall-clock limit."""

    def __init__(self, course: Course, work: Path, options: Options, timeout: int):
        self.course, self.work, self.options, self.timeout = course, work, options, timeout
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
        self.threads = max(1, cores // options.jobs)
        self.flowlib = Path(importlib.util.find_spec("flowlib").submodule_search_locations[0])
        self.running: set[subprocess.Popen] = set()

    def stop_all(self) -> None:
        for proc in list(self.running):
            _kill_group(proc)

    def run(self, s: Submission, t: Template) -> tuple[JobReport, float, Path]:
        start = time.monotonic()
        jobdir = Path(tempfile.mkdtemp(prefix=f"job-{s.notebook[:2]}-", dir=self.work))
        marker = uuid.uuid4().hex
        try:
            digest = self._prepare(jobdir, s, t)
            job = self._execute(jobdir, marker)
            if job.graded and tree_digest(jobdir / "lib" / "flowlib") != digest:
                job = JobReport.failed("the submission rewrote the course package flowlib on disk")
        except Exception as err:  # noqa: BLE001 (never let one submission stop the batch)
            job = JobReport.failed(f"grader error: {type(err).__name__}: {err}")
        return job, time.monotonic() - start, jobdir

    def _prepare(self, jobdir: Path, s: Submission, t: Template) -> str:
        shutil.copyfile(t.gradebook, jobdir / "gradebook.db")
        shutil.copytree(t.source_dir, jobdir / "source" / s.notebook)
        submitted = jobdir / "submitted" / s.student / s.notebook
        submitted.mkdir(parents=True)
        shutil.copyfile(s.path, submitted / f"{s.notebook}.ipynb")
        if s.timestamp:
            (submitted / "timestamp.txt").write_text(s.timestamp)
        lib = jobdir / "lib"
        shutil.copytree(self.flowlib, lib / "flowlib", ignore=shutil.ignore_patterns("__pycache__"))
        data = self.flowlib.parent / "data"
        if data.is_dir():
            (lib / "data").symlink_to(data)  # flowlib's repo_data_dir(): pretrained checkpoints
        (jobdir / "ipc").mkdir()
        o = self.options
        sandbox = self._sandbox(jobdir, s).to_dict() if o.sandbox else None
        JobSpec(
            s.notebook,
            s.student,
            str(self.course.config_file),
            self.timeout,
            o.memory,
            o.max_file_size,
            max(60, o.submission_timeout - 120),
            o.show_hidden,
            sandbox,
        ).write(jobdir)
        return tree_digest(lib / "flowlib")

    def _sandbox(self, jobdir: Path, s: Submission) -> kernel_sandbox.SandboxSpec:
        """What the kernel sees: Python, the job's flowlib, the data; it writes its sockets."""
        data = (
            [str(Path(os.environ["FLOWLIB_DATA"]).resolve())]
            if os.environ.get("FLOWLIB_DATA")
            else []
        )
        repo_data = self.flowlib.parent / "data"
        if repo_data.is_dir():
            data.append(str(repo_data.resolve()))
        writable = [str(jobdir / "ipc")]
        env = {}
        if self.options.data_cache:
            writable.append(str(self.options.data_cache.resolve()))
            env["FLOWLIB_CACHE"] = str(self.options.data_cache.resolve())
        return kernel_sandbox.SandboxSpec(
            read_only=[*kernel_sandbox.python_paths(), str(jobdir / "lib"), *data],
            writable=writable,
            work_files=str(jobdir / "autograded" / s.student / s.notebook),
            tmp_bytes=self.options.tmp_size,
            processes=self.options.processes,
            env=env,
        )

    def _execute(self, jobdir: Path, marker: str) -> JobReport:
        """Run the job; its report counts only if it carries the nonce sent on its stdin,
        which the job reads before any student code runs."""
        nonce = uuid.uuid4().hex
        # resolved, as the sandbox mounts them: a path through a symbolic link would not exist there
        keep = {
            k: str(Path(os.environ[k]).resolve()) for k in ("FLOWLIB_DATA",) if os.environ.get(k)
        }
        if self.options.data_cache:
            keep["FLOWLIB_CACHE"] = str(self.options.data_cache.resolve())
        env = scrubbed_environment(jobdir / "scratch", marker, self.threads, jobdir / "lib", keep)
        limit = self.options.submission_timeout
        with open(jobdir / "job.log", "wb") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.job", str(jobdir)],
                cwd=jobdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.running.add(proc)
            try:
                proc.communicate(nonce.encode() + b"\n", timeout=limit)
            except subprocess.TimeoutExpired:
                return JobReport.failed(f"grading took longer than {limit} s and was stopped")
            finally:
                _kill_group(proc)
                kill_marked(marker)
                self.running.discard(proc)
        result = jobdir / "result.json"
        readable = result.is_file() and not result.is_symlink()
        job = JobReport.from_json(result.read_text()) if readable else JobReport.failed("")
        if job.nonce != nonce:  # missing, or planted by the submission
            how = (
                f"signal {-proc.returncode}"
                if proc.returncode < 0
                else f"exit status {proc.returncode}"
            )
            return JobReport.failed(f"the grading process ended without a report ({how})")
        return job


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
