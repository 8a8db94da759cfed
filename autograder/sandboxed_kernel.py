"""A Jupyter kernel manager that starts the kernel inside :mod:`autograder.kernel_sandbox`.

The job (outside the sandbox) talks to the kernel over Unix sockets in a folder that
both see. A kernel in its own PID namespace cannot be interrupted with a signal from
outside, so interrupts go as an ``interrupt_request`` message on the control channel
(``interrupt_mode: message``); ipykernel then sends SIGINT to its own process group.
"""

from __future__ import annotations

from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict

from .kernel_sandbox import SandboxSpec, command


class SandboxedKernelManager(AsyncKernelManager):
    sandbox = Dict(help="SandboxSpec fields of the kernel's sandbox").tag(config=True)

    def format_kernel_cmd(self, extra_arguments=None):
        argv = super().format_kernel_cmd(extra_arguments)
        self.kernel_spec.interrupt_mode = "message"
        spec = SandboxSpec(**self.sandbox)
        spec.read_only = [*spec.read_only, str(Path(self.connection_file).resolve())]
        return command(spec, argv)
