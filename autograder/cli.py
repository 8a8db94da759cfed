"""The ``flowlib-grade`` command (also ``python -m autograder``).

    flowlib-grade grade SUBMISSIONS... [--notebook NB] [--jobs N] [--timeout S] [--memory 4G]
    flowlib-grade collect SUBMISSIONS...        who is who, without grading
    flowlib-grade selfcheck [NB...]             instructor version full marks, student version zero
    flowlib-grade release [NB...] [--check]     write or check notebooks/ from solutions/
    flowlib-grade release-held STUDENT NB       let a held submission's grade count
    flowlib-grade export [--out DIR]            canvas_grades.csv and moodle_grades.csv again

Exit status: 0 done (a submission that could not be graded is reported, not an
error), 1 a check failed (selfcheck, release --check), 2 bad input, or no sandbox can
be made (``grade --no-sandbox`` accepts the risk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .course import Course, GradingError, skip_slow_imports
from .sandbox import parse_size


def _course(args) -> Course:
    if args.course is None:
        return Course()
    root = Path(args.course).resolve()
    if not root.is_dir():
        raise GradingError(f"no course folder {root}")
    return Course(root=root)


def _options(args):
    from .batch import Options

    return Options(
        timeout=args.timeout,
        memory=parse_size(args.memory) if args.memory not in ("0", "none") else None,
        jobs=args.jobs,
        submission_timeout=args.submission_timeout,
        show_hidden=getattr(args, "show_hidden", False),
        force=getattr(args, "force", False),
        keep_work=args.keep_work,
        data_cache=getattr(args, "data_cache", None),
        sandbox=not args.no_sandbox,
        processes=args.processes,
        tmp_size=parse_size(args.tmp_size),
    )


def cmd_grade(args) -> int:
    from .batch import grade

    course = _course(args)
    out = Path(args.out) if args.out else course.default_out
    gradebook = (
        None if args.no_gradebook else Path(args.gradebook) if args.gradebook else course.gradebook
    )
    report = grade(
        course, args.submissions, out, _options(args), notebooks=args.notebook, gradebook=gradebook
    )
    graded = sum(r.graded for r in report.results)
    held = sum(r.is_held for r in report.results)
    print(
        f"\n{graded} graded, {held} held (see summary.md), {len(report.results) - graded - held} "
        f"not graded, {report.reused} unchanged; "
        f"{len(report.rejected)} files not graded (see {out / 'import_report.csv'}); "
        f"{report.seconds:.0f} s.\nGrades: {out / 'grades.csv'}  Summary: {out / 'summary.md'}  "
        f"Feedback: {out / 'feedback'}" + (f"  Gradebook: {gradebook}" if gradebook else "")
    )
    for x in report.rejected:
        if not x.reason.startswith("ignored"):
            print(f"  not graded: {x.origin}: {x.reason}")
    return 0


def cmd_collect(args) -> int:
    import tempfile

    from .collect import collect

    course = _course(args)
    with tempfile.TemporaryDirectory() as tmp:
        found = collect(args.submissions, course.notebooks(), Path(tmp))
        for s in found.submissions:
            print(f"{s.student:20} {s.notebook:28} {s.origin}")
        for x in found.rejected:
            print(f"{'-':20} {'-':28} {x.origin}: {x.reason}")
    return 0


def cmd_selfcheck(args) -> int:
    from .selfcheck import selfcheck

    problems = selfcheck(_course(args), args.notebooks, _options(args))
    for nb, found in problems.items():
        print(f"{nb}: " + ("ok" if not found else "FAILED\n  " + "\n  ".join(found)))
    return 1 if any(problems.values()) else 0


def _out_and_gradebook(args, course: Course) -> tuple[Path, Path | None]:
    out = Path(args.out) if args.out else course.default_out
    if args.no_gradebook:
        return out, None
    return out, Path(args.gradebook) if args.gradebook else course.gradebook


def cmd_release_held(args) -> int:
    from .held import release_held

    course = _course(args)
    out, gradebook = _out_and_gradebook(args, course)
    print(
        f"{args.student} {args.notebook}: "
        + release_held(out, args.student, args.notebook, gradebook)
    )
    return 0


def cmd_export(args) -> int:
    from .lms_export import write_exports
    from .results import ResultStore

    out = Path(args.out) if args.out else _course(args).default_out
    results = ResultStore(out).all()
    if not results:
        raise GradingError(f"no grades in {out / 'results'}: run `grade` first (or give --out)")
    for path in write_exports(results, out):
        print(path)
    return 0


def cmd_release(args) -> int:
    from .release import check_release, write_release

    course = _course(args)
    if not args.check:
        write_release(course, args.notebooks)
        return 0
    diffs = check_release(course, args.notebooks)
    for nb, found in diffs.items():
        print(f"{nb}: " + ("up to date" if not found else "OUT OF DATE\n  " + "\n  ".join(found)))
    if any(diffs.values()):
        print(
            "Regenerate with: python -m autograder release "
            + " ".join(nb for nb, d in diffs.items() if d)
        )
        return 1
    return 0


def _limits(p: argparse.ArgumentParser, jobs: int = 1) -> None:
    p.add_argument(
        "--jobs", "-j", type=int, default=jobs, help=f"submissions graded at once (default {jobs})"
    )
    p.add_argument(
        "--timeout",
        type=int,
        default=None,
        help="seconds per cell before it is interrupted (default: the course config, 300)",
    )
    p.add_argument(
        "--memory",
        default="4G",
        help="private memory per notebook, e.g. 2G; torch alone takes 0.8G of it "
        "(default 4G; 0: no cap)",
    )
    p.add_argument(
        "--submission-timeout",
        type=int,
        default=1800,
        help="seconds for one whole submission before its grading is stopped (default 1800)",
    )
    p.add_argument(
        "--keep-work", action="store_true", help="keep the job folders, to debug the grader"
    )
    p.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code WITHOUT the sandbox: it can then read and change what your "
        "user can, and use the network (summary.md records it)",
    )
    p.add_argument(
        "--processes", type=int, default=256, help="processes and threads per sandbox (default 256)"
    )
    p.add_argument(
        "--tmp-size",
        default="1G",
        help="size of each sandbox's private /tmp, its HOME and working folder (default 1G)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="flowlib-grade", description="Autograde the flows course with nbgrader."
    )
    top.add_argument(
        "--course", help="course folder with solutions/ and notebooks/ (default: this repository)"
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "grade", help="grade submissions: a folder, an LMS .zip or nbgrader's submitted/"
    )
    p.add_argument("submissions", nargs="+", type=Path, help="folders or .zip files")
    p.add_argument(
        "--notebook", "-n", action="append", help="grade only this notebook (repeatable)"
    )
    p.add_argument(
        "--out",
        help="where grades.csv, summary.md, feedback/ and results/ go "
        "(default autograder/work/grades)",
    )
    p.add_argument(
        "--gradebook",
        help="course gradebook to update (default: the config's autograder/gradebook.db)",
    )
    p.add_argument(
        "--no-gradebook", action="store_true", help="do not touch any nbgrader gradebook"
    )
    p.add_argument("--show-hidden", action="store_true", help="feedback shows the hidden tests")
    p.add_argument(
        "--force", action="store_true", help="grade again submissions that did not change"
    )
    p.add_argument(
        "--data-cache",
        type=Path,
        help="a FLOWLIB_CACHE shared by all jobs (faster, but one submission could poison it)",
    )
    _limits(p)
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("collect", help="show whose each file is, without grading")
    p.add_argument("submissions", nargs="+", type=Path)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("selfcheck", help="grade the course's own notebooks: full marks and zero")
    p.add_argument("notebooks", nargs="*", help="default: all")
    _limits(p, jobs=2)
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("release-held", help="let the grade of a held submission count")
    p.add_argument("student")
    p.add_argument("notebook")
    p.add_argument("--out", help="the folder `grade` wrote (default autograder/work/grades)")
    p.add_argument("--gradebook", help="course gradebook to update (default: the config's)")
    p.add_argument(
        "--no-gradebook", action="store_true", help="do not touch any nbgrader gradebook"
    )
    p.set_defaults(func=cmd_release_held)

    p = sub.add_parser(
        "export", help="write canvas_grades.csv and moodle_grades.csv from the grades"
    )
    p.add_argument("--out", help="the folder `grade` wrote (default autograder/work/grades)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("release", help="write notebooks/ from solutions/ (or --check it)")
    p.add_argument("notebooks", nargs="*", help="default: all")
    p.add_argument(
        "--check", action="store_true", help="fail if a committed student notebook is out of date"
    )
    p.set_defaults(func=cmd_release)
    return top


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    skip_slow_imports()
    try:
        return args.func(args)
    except GradingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
