"""Grading throughput: submissions per minute for one notebook, end to end.

Grades a batch of ordinary submissions (half correct, half with the last exercise
left undone) with ``python -m autograder grade``'s machinery, ``--force`` each time,
and prints submissions per minute for every run and their median. The template is
built once before timing. Timings on a shared machine swing a lot: the load average
is printed with the figure, and so is the CPU time per submission, from which the
rate on an idle machine follows.

    .venv/bin/python benchmarks/grading_throughput.py        # 8 submissions, --jobs 2, 3 runs
    .venv/bin/python benchmarks/grading_throughput.py --jobs 1 --submissions 4 --repeats 1
    .venv/bin/python benchmarks/grading_throughput.py --notebook 04_glow --sandbox both

``--sandbox both`` (the default) interleaves runs with and without the sandbox and
prints what the sandbox costs, in CPU time per submission and in throughput.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import synthetic
from autograder.batch import Options, grade
from autograder.course import Course, skip_slow_imports
from autograder.sandbox import parse_size
from autograder.templates import template


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--notebook", default="01_change_of_variables")
    p.add_argument("--submissions", type=int, default=8)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--memory", default="2G")
    p.add_argument(
        "--sandbox",
        choices=["both", "on", "off"],
        default="both",
        help="grade with the sandbox, without, or both interleaved (default)",
    )
    args = p.parse_args(argv)
    skip_slow_imports()
    course = Course()
    notebook = course.check_notebook(args.notebook)
    with tempfile.TemporaryDirectory(prefix="grading-bench-") as tmp:
        tmp = Path(tmp)
        t = template(course, notebook, course.template_cache)
        cases = {
            c.name: c
            for c in synthetic.cases(course.instructor_notebook(notebook), t.release_notebook)
        }
        kinds = ["correct", "partial"]
        students = {f"s{i:03d}": cases[kinds[i % 2]] for i in range(args.submissions)}
        for student, case in students.items():
            path = tmp / "subs" / student / case.filename
            path.parent.mkdir(parents=True)
            path.write_bytes(case.content)
        modes = (
            {"on": True, "off": False}
            if args.sandbox == "both"
            else {args.sandbox: args.sandbox == "on"}
        )
        runs = {mode: {"rates": [], "cpu": [], "timings": []} for mode in modes}
        for run in range(args.repeats):
            for mode, sandbox in modes.items():  # interleaved, so that both see the same load
                options = Options(
                    timeout=args.timeout,
                    memory=parse_size(args.memory),
                    jobs=args.jobs,
                    force=True,
                    sandbox=sandbox,
                )
                _run(course, tmp, options, runs[mode], f"run {run + 1}, sandbox {mode}")
    for mode, got in runs.items():
        _report(notebook, mode, got, args.jobs)
    if len(runs) == 2:
        on, off = (statistics.median(runs[m]["cpu"]) for m in ("on", "off"))
        wall_on, wall_off = (statistics.median(runs[m]["rates"]) for m in ("on", "off"))
        print(
            f"{notebook}: the sandbox costs {100 * (on / off - 1):+.1f}% CPU per submission and "
            f"{100 * (1 - wall_on / wall_off):+.1f}% of the wall-clock throughput"
        )
    return 0


def _run(course, tmp: Path, options, got: dict, label: str) -> None:
    out = tmp / "out"
    load = os.getloadavg()[0]
    before = _cpu_seconds()
    report = grade(
        course, [tmp / "subs"], out, options, gradebook=out / "gradebook.db", log=lambda *a: None
    )
    # a kernel in a PID namespace is not in this process's rusage: the job measured it
    hidden = (
        sum(r.timings.get("kernel_cpu", 0.0) for r in report.results) if options.sandbox else 0.0
    )
    got["cpu"].append((_cpu_seconds() - before + hidden) / len(report.results))
    bad = [r for r in report.results if not r.graded]
    if bad:
        print(f"{label}: not graded: {[r.status for r in bad]}")
    rate = 60 * len(report.results) / report.seconds
    got["rates"].append(rate)
    got["timings"] += [r.timings for r in report.results if r.timings]
    print(
        f"{label}: {len(report.results)} submissions in {report.seconds:.1f} s = "
        f"{rate:.1f} submissions/min "
        f"(--jobs {options.jobs}, load average {load:.1f})"
    )


def _report(notebook: str, mode: str, got: dict, jobs: int) -> None:
    timings = got["timings"]
    if timings:
        parts = {k: statistics.median(t[k] for t in timings if k in t) for k in timings[0]}
        print(
            f"sandbox {mode}: median seconds per submission: "
            + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
        )
    per = statistics.median(got["cpu"])
    print(
        f"{notebook}, sandbox {mode}: median {statistics.median(got['rates']):.1f} "
        "submissions/min on "
        f"{os.cpu_count()} CPUs with --jobs {jobs}; {per:.1f} CPU s per submission, so at most "
        f"{60 * min(jobs, os.cpu_count()) / per:.1f} submissions/min on an idle machine"
    )


def _cpu_seconds() -> float:
    """CPU time of this process and of every finished process started from it."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    sys.exit(main())
