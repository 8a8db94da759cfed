"""Autograding for the flows course: nbgrader, hardened for a batch of untrusted notebooks.

``python -m autograder`` (or ``flowlib-grade``) imports submissions from a folder, an LMS
zip or nbgrader's layout, grades each one in its own process and folder, its kernel in a
bubblewrap sandbox, with a per-cell timeout and memory and process caps, in parallel, and
merges the results serially into the course gradebook, ``grades.csv``, Canvas and Moodle
import files, per-student feedback and a summary. See ``autograder/README.md``.

Modules: :mod:`~autograder.cli` (the command), :mod:`~autograder.collect` (whose file is
which), :mod:`~autograder.templates` (released assignments), :mod:`~autograder.batch`
(parallel jobs, serial merge), :mod:`~autograder.job` (one submission),
:mod:`~autograder.robust_execute` (surviving kernel deaths), :mod:`~autograder.sandbox`
(limits, environment, stray processes), :mod:`~autograder.results` (CSV, summary),
:mod:`~autograder.gradebook` (course gradebook), :mod:`~autograder.review` (file checks),
:mod:`~autograder.selfcheck` and :mod:`~autograder.release` (CI checks),
:mod:`~autograder.synthetic` (test submissions), :mod:`~autograder.kernel_sandbox` and
:mod:`~autograder.sandboxed_kernel` (the bubblewrap sandbox), :mod:`~autograder.pass_tokens`
and :mod:`~autograder.tamper_probe` (verdicts student code cannot forge),
:mod:`~autograder.held` (held submissions), :mod:`~autograder.metadata_repair`,
:mod:`~autograder.lms_export`, :mod:`~autograder.job_report`, :mod:`~autograder.error_names`.
"""
