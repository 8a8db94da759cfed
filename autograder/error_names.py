"""Names of the errors the grader itself puts into a notebook's cells.

They appear as ``ename`` of an error output, in grades.csv messages and in summary.md;
:func:`autograder.job.error_line` reports them before the ``KeyboardInterrupt`` they
may cause.
"""

CELL_TIMEOUT = "CellTimeoutError"  # the cell ran past --timeout and was interrupted
KERNEL_DIED = "KernelDied"  # the kernel ended while the cell ran; later cells ran in a fresh one
NOT_RUN = "NotRun"  # the notebook ran out of time or kernel restarts before this cell
NO_PASS_SIGNAL = "NoPassSignal"  # a test cell that did not prove it ran to its end

GRADER_ERRORS = (CELL_TIMEOUT, KERNEL_DIED, NOT_RUN, NO_PASS_SIGNAL)
