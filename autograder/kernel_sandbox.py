"""The sandbox every submission's kernel runs in: bubblewrap (Debian package
``bubblewrap``), with its own user, mount, PID, network, IPC, UTS and cgroup namespaces.

What the kernel sees (read-only): the system's ``/usr``, a few files of ``/etc``, the
Python environment, the job's private copy of ``flowlib``, the data folders and the
assignment's files. What it can write: a size-capped private ``/tmp`` (its HOME and
working folder are there) and the folder of its own Unix sockets. The course checkout,
the output folder, gradebooks, other submissions and the instructor's HOME are not
mounted at all. The network namespace has only its own loopback. In the PID namespace
the kernel cannot see or signal the grader. ``prlimit`` caps the processes of the
sandbox's user namespace (Linux >= 5.14 counts them per namespace).

Only the standard library is used here, so the module can be checked with any Python
(the tests run it as an ordinary user with the system's ``python3``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "passwd",
    "group",
    "hosts",
    "localtime",
    "ssl",
    "ca-certificates",
    "alternatives",
    "mime.types",
    "fonts",
)
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SANDBOX_HOME = "/tmp/home"
SANDBOX_WORK = "/tmp/work"
INSTALL_HINT = (
    "install it with `apt-get install bubblewrap` (Debian/Ubuntu) or `dnf install bubblewrap`"
)


class SandboxUnavailable(Exception):
    """The sandbox cannot be created here; the message says why and what to do."""


@dataclass
class SandboxSpec:
    """What one kernel's sandbox mounts, and its limits."""

    read_only: list[str] = field(default_factory=list)  # folders or files, mounted at the same path
    writable: list[str] = field(default_factory=list)  # e.g. the folder of the kernel's sockets
    work_files: str | None = None  # a folder whose files appear read-only in the working folder
    tmp_bytes: int = 1 << 30  # size of the private /tmp (HOME and the working folder)
    processes: int = 256  # processes and threads of the sandbox's user
    env: dict[str, str] = field(default_factory=dict)  # set inside, on top of the inherited ones

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def python_paths() -> list[str]:
    """The folders of the running Python: its environment and the installation below it."""
    paths = {
        Path(sys.prefix).resolve(),
        Path(sys.base_prefix).resolve(),
        Path(sys.executable).resolve().parent,
    }
    kept = [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]
    return sorted(str(p) for p in kept if not p.is_relative_to("/usr"))


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ROOT_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def base_args(tmp_bytes: int = 1 << 30) -> list[str]:
    """Namespaces, the system folders, /proc, /dev and a private /tmp."""
    return [
        "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *_system_args(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(tmp_bytes),
        "--tmpfs",
        "/tmp",
        "--dir",
        SANDBOX_HOME,
        "--dir",
        SANDBOX_WORK,
    ]


def command(spec: SandboxSpec, argv: list[str]) -> list[str]:
    """``argv`` run inside the sandbox that ``spec`` describes."""
    args = base_args(spec.tmp_bytes)
    for path in spec.read_only:
        if Path(path).exists():
            args += ["--ro-bind", path, path]
    for path in spec.writable:
        args += ["--bind", path, path]
    if spec.work_files and Path(spec.work_files).is_dir():
        for item in sorted(Path(spec.work_files).iterdir()):
            args += ["--ro-bind", str(item), f"{SANDBOX_WORK}/{item.name}"]
    env = {
        "HOME": SANDBOX_HOME,
        "TMPDIR": "/tmp",
        "IPYTHONDIR": f"{SANDBOX_HOME}/.ipython",
        "MPLCONFIGDIR": f"{SANDBOX_HOME}/.matplotlib",
        "XDG_CACHE_HOME": f"{SANDBOX_HOME}/.cache",
        "JUPYTER_CONFIG_DIR": f"{SANDBOX_HOME}/.jupyter",
        "JUPYTER_DATA_DIR": f"{SANDBOX_HOME}/.jupyter/data",
        "JUPYTER_RUNTIME_DIR": f"{SANDBOX_HOME}/.jupyter/runtime",
        "FLOWLIB_CACHE": f"{SANDBOX_HOME}/.cache/flowlib",
        **spec.env,
    }
    for key, value in env.items():
        args += ["--setenv", key, value]
    # ipykernel polls this pid and exits when it is gone: not visible in the PID namespace
    # (--die-with-parent ends the kernel with its job instead)
    args += ["--unsetenv", "JPY_PARENT_PID"]
    args += [
        "--chdir",
        SANDBOX_WORK,
        "--",
        "prlimit",
        f"--nproc={spec.processes}",
        "--core=0",
        "--",
    ]
    return args + list(argv)


def problem() -> str | None:
    """Why no sandbox can be made here, or None when it works (a real sandbox is tried)."""
    if shutil.which("bwrap") is None:
        return f"bubblewrap (the `bwrap` command) is not installed; {INSTALL_HINT}"
    if shutil.which("prlimit") is None:
        return "the `prlimit` command (util-linux) is missing"
    try:
        proc = subprocess.run(
            [*base_args(16 << 20), "--", "/bin/true"],
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not be run: {err}"
    if proc.returncode == 0:
        return None
    why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    return (
        f"bwrap cannot create the namespaces ({why}); unprivileged user namespaces are probably "
        "disallowed here (inside a container, or by the sysctls kernel.unprivileged_userns_clone, "
        "user.max_user_namespaces or kernel.apparmor_restrict_unprivileged_userns)"
    )


def refusal(why: str) -> str:
    """The message ``grade`` refuses with when no sandbox can be made."""
    return (
        f"cannot sandbox the submissions: {why}.\n"
        "Without a sandbox, student code runs as your user: it can read your files (hidden tests, "
        "solutions, other students' work), change them and use the network.\n"
        "Ways out:\n"
        "  1. make the sandbox possible: install bubblewrap and allow unprivileged user namespaces "
        "(e.g. `sysctl -w kernel.unprivileged_userns_clone=1`, "
        "`sysctl -w user.max_user_namespaces=15000`, on Ubuntu "
        "`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`), or grade as a user or on a "
        "machine where `bwrap --unshare-all --dev-bind / / true` works;\n"
        "  2. grade without it: add --no-sandbox, which accepts that risk (summary.md records it)."
    )


def require() -> None:
    """Raise :class:`SandboxUnavailable` with :func:`refusal`'s message unless a sandbox works."""
    why = problem()
    if why:
        raise SandboxUnavailable(refusal(why))


if __name__ == "__main__":  # python -m autograder.kernel_sandbox: can this machine sandbox?
    found = problem()
    print(refusal(found) if found else "the sandbox works here")
    sys.exit(1 if found else 0)
