"""What keeps one submission's run away from the grader and from the other runs.

- :func:`apply_limits`: resource limits set on the job process and inherited by its
  kernel. Memory is capped with ``RLIMIT_DATA`` (private writable memory, Linux >= 4.7):
  an allocation over the cap fails inside the kernel (``MemoryError`` or torch's
  "can't allocate memory") and the kernel lives on. ``RLIMIT_AS`` would count the
  ~3.3 GB of address space that importing torch maps; ``RLIMIT_DATA`` counts ~0.8 GB
  of it, so a cap leaves (cap - 0.8 GB) to the student's code.
- :func:`become_subreaper` and :func:`kill_descendants`: processes a student starts,
  even daemonised ones, end up as children of the job and are killed before the grades
  are written.
- :func:`scrubbed_environment`: a job sees only what grading needs; HOME, temporary,
  IPython, Jupyter and matplotlib folders all point into its private scratch folder.
- :func:`tree_digest`: the job's private copy of ``flowlib`` is checked afterwards,
  so a submission that rewrote it on disk is caught.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import signal
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def parse_size(text: str | int) -> int:
    """Bytes from ``"2G"``, ``"512M"``, ``"100k"`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = str(text).strip().lower().removesuffix("b").removesuffix("i")
    try:
        if s and s[-1] in units:
            return int(float(s[:-1]) * units[s[-1]])
        return int(s)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 2G, 512M)") from None


def apply_limits(memory: int | None, max_file_size: int | None) -> None:
    """Cap private memory and the size of any one written file; no core dumps.

    Limits and ignored signals carry over to every process started from here."""
    if memory:
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    if max_file_size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # a write past the file cap fails with EFBIG instead of killing the writer
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_descendants(rounds: int = 3) -> int:
    """Kill every descendant of this process; returns how many were killed."""
    import psutil

    killed = 0
    me = psutil.Process()
    for _ in range(rounds):  # a process may fork while we kill
        children = me.children(recursive=True)
        if not children:
            break
        for child in children:
            try:
                child.send_signal(signal.SIGKILL)
                killed += 1
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=2)
    return killed


def kernel_cpu_seconds() -> float:
    """CPU seconds used so far by this process's descendants (the kernel and what it
    started and waited for)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def kill_marked(marker: str) -> int:
    """Kill processes whose environment carries ``AUTOGRADER_JOB=marker``: strays
    of a job that was killed from outside."""
    import psutil

    killed = 0
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("AUTOGRADER_JOB") == marker:
                proc.kill()
                killed += 1
        except psutil.Error:
            pass
    return killed


def scrubbed_environment(
    scratch: Path, marker: str, threads: int, pythonpath: Path, keep: dict[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a job: nothing is inherited but ``keep``."""
    home = scratch / "home"
    dirs = {
        "HOME": home,
        "TMPDIR": scratch / "tmp",
        "IPYTHONDIR": home / ".ipython",
        "JUPYTER_CONFIG_DIR": home / ".jupyter",
        "JUPYTER_DATA_DIR": home / ".local/share/jupyter",
        "JUPYTER_RUNTIME_DIR": home / ".local/share/jupyter/runtime",
        "MPLCONFIGDIR": home / ".matplotlib",
        "XDG_CACHE_HOME": home / ".cache",
        "FLOWLIB_CACHE": home / ".cache/flowlib",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    from .course import venv_bin

    env = {k: str(v) for k, v in dirs.items()}
    env.update(
        {
            "PATH": os.pathsep.join([str(venv_bin()), "/usr/local/bin", "/usr/bin", "/bin"]),
            "PYTHONPATH": str(pythonpath),
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "FLOWLIB_FAST": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
            "AUTOGRADER_JOB": marker,
        }
    )
    env.update(keep or {})
    return env


def tree_digest(folder: Path) -> str:
    """Hash of every file name and content under ``folder``."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            h.update(str(path.relative_to(folder)).encode() + b"\0")
            h.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    return h.hexdigest()
