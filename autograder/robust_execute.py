"""nbgrader's Execute preprocessor, hardened for untrusted submissions.

nbgrader stops grading a notebook when its kernel dies (``os._exit``, a crash, the
OOM killer) and loses every grade of that submission. :class:`RobustExecute` instead:

- records the error in the cell that killed the kernel (it scores 0 if graded),
  starts a fresh kernel, replays the cells above it (outputs untouched) so the state
  is back, and goes on with the next cell;
- after a cell times out, checks that the kernel answers again; a kernel that ignores
  the interrupt is replaced the same way;
- gives up after ``max_kernel_restarts`` restarts or past ``notebook_timeout`` seconds:
  every cell not run then gets an error output, so none of them can score;
- keeps at most ``max_output_bytes`` of output per cell while it runs (a print loop
  would otherwise fill the grader's memory before the timeout stops it);
- kills every process the submission left behind before nbgrader saves the grades.
"""

from __future__ import annotations

import copy
from queue import Empty
from time import monotonic

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from . import pass_tokens, tamper_probe
from .error_names import CELL_TIMEOUT, KERNEL_DIED, NOT_RUN
from .sandbox import kernel_cpu_seconds, kill_descendants


def error_output(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(
        output_type="error",
        ename=ename,
        evalue=evalue,
        traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"],
    )


def _size(content: dict) -> int:
    """Rough size in bytes of an output message's content."""
    data = content.get("data") or {}
    return len(content.get("text") or "") + sum(len(str(v)) for v in data.values())


class RobustExecute(Execute):
    max_kernel_restarts = Integer(3, help="Kernel restarts allowed per notebook").tag(config=True)
    notebook_timeout = Integer(
        None, allow_none=True, help="Seconds for the whole notebook; later cells are not run"
    ).tag(config=True)
    probe_timeout = Integer(15, help="Seconds a kernel has to answer after an interrupt").tag(
        config=True
    )
    max_output_bytes = Integer(1 << 20, help="Output kept per cell; later output is dropped").tag(
        config=True
    )

    def preprocess(self, nb, resources=None, km=None):
        self._restarts = 0
        self._skip: set[int] = set()  # cells that killed or hung the kernel: never replayed
        self._gave_up: str | None = None
        self._deadline = monotonic() + self.notebook_timeout if self.notebook_timeout else None
        self._output_bytes: dict[int, int] = {}
        self._baseline: dict | None = None  # the kernel's machinery before any student code
        self._tampering: list[str] = []
        self._kernel_cpu = 0.0
        tokens = {
            i: pass_tokens.arm(c) for i, c in enumerate(nb.cells) if pass_tokens.is_test_cell(c)
        }
        try:
            nb, resources = super().preprocess(nb, resources, km)
        finally:
            kill_descendants()
        for i, token in tokens.items():
            if not pass_tokens.disarm(nb.cells[i], token):
                pass_tokens.fail_unproven(nb.cells[i])
        meta = nb.metadata.setdefault("autograder", {})
        meta["tampering"], meta["kernel_cpu"] = self._tampering, round(self._kernel_cpu, 2)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.source.strip():
            return cell, self.resources
        if self._deadline and monotonic() > self._deadline and not self._gave_up:
            self._gave_up = (
                f"not run: the notebook used up its {self.notebook_timeout} s of grading time"
            )
        if self._gave_up:
            cell.outputs = [error_output(NOT_RUN, self._gave_up)]
            return cell, self.resources
        self._output_bytes[index] = 0
        if self._baseline is None:
            self._baseline = self._first_probe()
        try:
            super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell.outputs.append(
                error_output(
                    KERNEL_DIED,
                    "the kernel stopped while this cell ran (sys/os exit, a crash or the "
                    "memory limit); the cells below ran in a fresh kernel",
                )
            )
            self._skip.add(index)
            self._recover(index)
            return cell, self.resources
        except CellTimeoutError as err:  # e.g. no output for a while after the reply
            cell.outputs.append(error_output(CELL_TIMEOUT, str(err).splitlines()[0]))
        if self._timed_out(cell):
            self._skip.add(index)
            if not self._kernel_answers():
                self.log.warning("kernel does not answer after a timeout; restarting it")
                self._recover(index)
                return cell, self.resources
        self._check_machinery()
        return cell, self.resources

    def _check_machinery(self) -> None:
        """Compare the kernel's machinery with its state before any student code."""
        for found in tamper_probe.changes(self._baseline, self._probe()):
            if found not in self._tampering:
                self._tampering.append(found)

    async def _async_cleanup_kernel(self) -> None:
        self._kernel_cpu += kernel_cpu_seconds()  # a PID namespace hides it from the job's rusage
        await super()._async_cleanup_kernel()

    _cleanup_kernel = run_sync(_async_cleanup_kernel)

    def _first_probe(self) -> dict:
        """The fingerprint of a fresh kernel (no student code has run in it yet)."""
        found = self._probe()
        if found is None:
            self._tampering.append(tamper_probe.NO_BASELINE)
        return found or {}

    async def _async_probe(self) -> dict | None:
        name = "fingerprint"
        msg_id = self.kc.execute(
            "", silent=True, store_history=False, user_expressions={name: tamper_probe.request()}
        )
        deadline = monotonic() + self.probe_timeout
        while (left := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return tamper_probe.read_answer(msg, name)
        return None

    _probe = run_sync(_async_probe)

    def output(self, outs, msg, display_id, cell_index):
        used = self._output_bytes.get(cell_index, 0)
        size = _size(msg.get("content", {}))
        self._output_bytes[cell_index] = used + size
        if msg["msg_type"] == "error" or used + size <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.max_output_bytes:  # say it once
            outs.append(
                NotebookNode(
                    output_type="stream",
                    name="stderr",
                    text=f"\n[output beyond {self.max_output_bytes} bytes dropped by the grader]\n",
                )
            )
        return None

    def clear_output(self, outs, msg, cell_index):
        self._output_bytes[cell_index] = 0
        return super().clear_output(outs, msg, cell_index)

    # -- helpers

    def _timed_out(self, cell) -> bool:
        ename = self.error_on_timeout.get("ename") if self.error_on_timeout else CELL_TIMEOUT
        return any(
            o.get("output_type") == "error" and o.get("ename") == ename for o in cell.outputs
        )

    async def _async_kernel_answers(self) -> bool:
        msg_id = self.kc.execute("", silent=True, store_history=False)
        deadline = monotonic() + self.probe_timeout
        while (left := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    _kernel_answers = run_sync(_async_kernel_answers)

    def _recover(self, index: int) -> None:
        """Fresh kernel, then the cells above ``index`` again, until that works."""
        while not self._gave_up:
            if self._restarts >= self.max_kernel_restarts:
                self._gave_up = f"not run: the kernel was restarted {self._restarts} times already"
                return
            self._restarts += 1
            self._restart_kernel()
            try:
                self._replay(index)
                return
            except DeadKernelError:
                continue

    def _restart_kernel(self) -> None:
        try:
            self._cleanup_kernel()
        except Exception as err:  # noqa: BLE001 the kernel is already gone
            self.log.debug("cleanup after kernel death: %s", err)
        kill_descendants()
        self.km = self.create_kernel_manager()
        self.start_new_kernel()
        self.start_new_kernel_client()
        self._baseline = self._first_probe()

    def _replay(self, index: int) -> None:
        for j in range(index):
            cell = self.nb.cells[j]
            if cell.cell_type != "code" or j in self._skip or not cell.source.strip():
                continue
            if self._deadline and monotonic() > self._deadline:
                self._gave_up = (
                    f"not run: the notebook used up its {self.notebook_timeout} s of grading time"
                )
                return
            scratch = copy.deepcopy(cell)
            self._output_bytes[j] = 0
            try:
                self.execute_cell(scratch, j, store_history=True)
            except DeadKernelError:
                self._skip.add(j)
                raise
            if self._timed_out(scratch):
                self._skip.add(j)
