"""Drive a real JupyterLab in a real browser: the helpers behind the end-to-end tests.

``LabServer`` runs ``jupyter lab`` on 127.0.0.1 (a free port, a token) in a folder of
its own, with its own Jupyter config, settings, workspaces and runtime folders, so what
a developer has in ``~/.jupyter`` cannot change the result. ``stop()`` always leaves
nothing running: it asks the server to shut down (which stops its kernels), then
terminates whatever it started that is still alive, and finally kills the process group.

The page helpers (``open_notebook``, ``set_cell_source``, ``run_cell``,
``check_slider_widget``, ``validate_with_button``...) use JupyterLab 4's DOM and keyboard
shortcuts the way a student does: click a cell, select all, type, shift-enter. Cells are
found by their position in the .ipynb file (by nbgrader grade_id where they have one), so
long cells that CodeMirror renders only in part cannot confuse the search. A helper that
fails raises ``E2EFailure`` (an AssertionError) with a message that says what was
expected and what the page showed instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil  # a dependency of ipython (and so of every Jupyter kernel here)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "e2e"
CHROMIUM = Path(os.environ.get("FLOWLIB_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
NBGRADER_EXTENSION = "@jupyter/nbgrader"

# Bounded waits (seconds). The CI machines have 2 shared cores: be generous, never infinite.
SERVER_START_TIMEOUT = 180
PAGE_LOAD_TIMEOUT = 120
KERNEL_TIMEOUT = 120
CELL_TIMEOUT = 480
WIDGET_TIMEOUT = 60


class E2EFailure(AssertionError):
    """A step of an end-to-end test did not do what it should; the message says what."""


def jupyter_command() -> list[str]:
    """The `jupyter` next to this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "jupyter"
    if here.exists():
        return [str(here)]
    found = shutil.which("jupyter")
    if not found:
        raise E2EFailure(
            "No `jupyter` command: install the course extras (pip install -e '.[course]')."
        )
    return [found]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------
class LabServer:
    """``jupyter lab`` serving ``root``, with private config/settings/runtime under ``work``.

    disabled_labextensions: lab extensions to disable, with the real
    ``jupyter labextension disable`` command run against the private config folder
    (JUPYTER_CONFIG_DIR), e.g. to prove that the widget check notices a broken widget
    manager.
    """

    def __init__(
        self,
        root: Path,
        work: Path,
        name: str = "lab",
        env: dict | None = None,
        disabled_labextensions: tuple[str, ...] = (),
    ):
        self.root, self.work, self.name = Path(root), Path(work), name
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = ARTIFACTS / f"jupyter-{name}.log"
        self.disabled_labextensions = disabled_labextensions
        self.env = self._environment(env or {})
        self._tracked: dict[int, psutil.Process] = {}

    # -- set-up --------------------------------------------------------------------
    def _environment(self, extra: dict) -> dict:
        env = dict(os.environ)
        for key in (
            "JUPYTER_CONFIG_DIR",
            "JUPYTER_RUNTIME_DIR",
            "JUPYTERLAB_SETTINGS_DIR",
            "JUPYTERLAB_WORKSPACES_DIR",
            "FLOWLIB_CACHE",
        ):
            env.pop(key, None)
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(self.work / "config"),
                "JUPYTER_RUNTIME_DIR": str(self.work / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(self.work / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(self.work / "workspaces"),
                "FLOWLIB_CACHE": str(self.work / "cache"),
                "FLOWLIB_FAST": "1",
                "PYTHONUNBUFFERED": "1",
                "JUPYTER_PLATFORM_DIRS": "1",
            }
        )
        env.update(extra)
        return env

    def _prepare(self) -> None:
        for sub in ("config", "runtime", "settings", "workspaces", "cache"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        # No news/update toasts over the notebook (and no requests to the internet).
        notification = self.work / "settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        for extension in self.disabled_labextensions:
            done = subprocess.run(
                jupyter_command() + ["labextension", "disable", "--level=user", extension],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise E2EFailure(
                    f"`jupyter labextension disable {extension}` "
                    f"failed:\n{done.stdout}{done.stderr}"
                )

    def start(self, timeout: float = SERVER_START_TIMEOUT) -> LabServer:
        self._prepare()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        command = jupyter_command() + [
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            command.append("--allow-root")
        self._log = open(self.log_path, "w")
        self._log.write("$ " + " ".join(command) + "\n")
        self._log.flush()
        self.proc = subprocess.Popen(
            command,
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise E2EFailure(
                    f"jupyter lab exited with code {self.proc.returncode} before it answered.\n"
                    f"Its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            try:
                status = self.api("GET", "/api/status", timeout=5)
                if "started" in status:
                    return self
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise E2EFailure(
                    f"jupyter lab did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s.\n"
                    f"Its log ({self.log_path}) ends with:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    # -- use -------------------------------------------------------------------------
    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel of this server (between tests: frees CPU and memory)."""
        try:
            for kernel in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)
        except Exception:
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def _track_children(self) -> None:
        """Remember every process the server started (kernels run in sessions of their own)."""
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._tracked[child.pid] = child
        except psutil.Error:
            pass

    # -- tear-down -------------------------------------------------------------------
    def stop(self) -> None:
        """Shut the server and everything it started down; safe to call twice, never raises."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                self._track_children()
                try:  # the polite way: stops the kernels and terminals too
                    self.api("POST", "/api/shutdown", timeout=10)
                except Exception:
                    pass
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                self._track_children()
                self._signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=15)
            # Kernels are started in sessions of their own: end those we saw, by pid.
            alive = [p for p in self._tracked.values() if _alive(p)]
            for p in alive:
                try:
                    p.terminate()
                except psutil.Error:
                    pass
            _, still = psutil.wait_procs(alive, timeout=10)
            for p in still:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            self._signal_group(proc.pid, signal.SIGKILL)  # anything left in the server's group
        finally:
            self.proc = None
            try:
                self._log.close()
            except Exception:
                pass

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def labextension_state(name: str, env: dict | None = None) -> tuple[bool, str]:
    """(enabled and OK?, what `jupyter labextension list` says about ``name``)."""
    done = subprocess.run(
        jupyter_command() + ["labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
    )
    for line in _strip_ansi(done.stdout + done.stderr).splitlines():
        words = line.split()
        if words and words[0] == name:
            return ("enabled" in words and "OK" in words), " ".join(words)
    return False, f"{name} is not installed"


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --------------------------------------------------------------------------------------
# Notebooks on disk: which cell is which
# --------------------------------------------------------------------------------------
@dataclass
class CellInfo:
    index: int
    cell_type: str
    source: str
    grade_id: str | None
    is_test: bool
    is_solution: bool


def notebook_cells(path: Path) -> list[CellInfo]:
    """The cells of an .ipynb file, with their nbgrader roles."""
    nb = json.loads(Path(path).read_text())
    cells = []
    for i, cell in enumerate(nb["cells"]):
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        meta = cell.get("metadata", {}).get("nbgrader", {})
        cells.append(
            CellInfo(
                i,
                cell["cell_type"],
                source,
                meta.get("grade_id"),
                bool(meta.get("grade")) and not meta.get("solution"),
                bool(meta.get("solution")),
            )
        )
    return cells


def cell_by_grade_id(cells: list[CellInfo], grade_id: str, where: str) -> CellInfo:
    for cell in cells:
        if cell.grade_id == grade_id:
            return cell
    known = ", ".join(c.grade_id for c in cells if c.grade_id)
    raise E2EFailure(
        f"{where} has no cell with nbgrader grade_id {grade_id!r} (it has: {known}). "
        f"The notebook changed: update the end-to-end test's cell ids."
    )


def solution_text(source: str) -> str:
    """An instructor cell as a student would write it: without the BEGIN/END SOLUTION lines."""
    keep = [
        line
        for line in source.splitlines()
        if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
    ]
    return "\n".join(keep).rstrip() + "\n"


# --------------------------------------------------------------------------------------
# The browser side
# --------------------------------------------------------------------------------------
class Shots:
    """Numbered screenshots of every step, under test-artifacts/e2e/<test name>/."""

    def __init__(self, page, name: str):
        self.page, self.folder, self.n = page, ARTIFACTS / name, 0
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{step}.png"
        try:
            self.page.screenshot(path=str(path), full_page=False, timeout=30_000)
        except Exception as error:  # a screenshot must never hide the real failure
            path.with_suffix(".txt").write_text(f"screenshot failed: {error}")
        return path


def new_page(browser):
    """A fresh browser context (no cookies, no storage) and a page in it, 1400x1000."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    return context, context.new_page()


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
CELLS = f"{PANEL} .jp-Notebook .jp-Cell"


def open_notebook(page, server: LabServer, path: str, shots: Shots | None = None) -> int:
    """Open /lab/tree/<path>, wait until every cell is there and the kernel is idle.

    Returns the number of cells shown.
    """
    page.goto(server.url(f"/lab/tree/{path}"), timeout=PAGE_LOAD_TIMEOUT * 1000)
    try:
        page.wait_for_selector(f"{CELLS}", timeout=PAGE_LOAD_TIMEOUT * 1000)
    except Exception:
        if shots:
            shots("notebook-did-not-open")
        raise E2EFailure(
            f"JupyterLab did not show the notebook {path} within {PAGE_LOAD_TIMEOUT} s "
            f"(no .jp-Cell on the page). Server log:\n{server.log_tail()}"
        ) from None
    wait_kernel_idle(page, shots)
    return page.locator(CELLS).count()


def wait_kernel_idle(page, shots: Shots | None = None, timeout: float = KERNEL_TIMEOUT) -> None:
    indicator = f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']"
    try:
        page.wait_for_selector(indicator, state="attached", timeout=timeout * 1000)
    except Exception:
        if shots:
            shots("kernel-not-idle")
        status = page.locator(f"{PANEL} .jp-Notebook-ExecutionIndicator").first.get_attribute(
            "data-status"
        )
        raise E2EFailure(
            f"The notebook's kernel was not idle within {timeout:.0f} s (status: {status!r})."
        ) from None


def cell(page, index: int):
    return page.locator(CELLS).nth(index)


def check_cell_count(page, expected: int, path: str, timeout: float = PAGE_LOAD_TIMEOUT) -> None:
    """Wait until the page shows as many cells as the file has (cells are attached bit by bit)."""
    deadline = time.monotonic() + timeout
    while (shown := page.locator(CELLS).count()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    if shown != expected:
        raise E2EFailure(
            f"JupyterLab shows {shown} cells for {path}, the file has {expected}: "
            f"cannot tell which cell is which."
        )


def select_cell(page, index: int) -> None:
    """Click a cell's input prompt: selects it in command mode, like a student's click."""
    target = cell(page, index)
    target.scroll_into_view_if_needed(timeout=30_000)
    prompt = target.locator(".jp-InputPrompt").first
    prompt.click(timeout=30_000)
    page.keyboard.press("Escape")  # command mode, whatever the click did


def prompt_text(page, index: int) -> str:
    return cell(page, index).locator(".jp-InputPrompt").first.inner_text().strip()


def run_cell(page, index: int, timeout: float = CELL_TIMEOUT, shots: Shots | None = None) -> str:
    """Select cell ``index``, press shift-enter, wait until it has run; returns its output text."""
    before = prompt_text(page, index)
    select_cell(page, index)
    page.keyboard.press("Shift+Enter")
    if "jp-CodeCell" not in (cell(page, index).get_attribute("class") or ""):
        return ""
    deadline = time.monotonic() + timeout
    while True:
        now = prompt_text(page, index)
        if re.fullmatch(r"\[\d+\]:", now) and now != before:
            break
        if time.monotonic() > deadline:
            if shots:
                shots(f"cell-{index}-still-running")
            raise E2EFailure(
                f"Cell {index} did not finish within {timeout:.0f} s after shift-enter "
                f"(its prompt shows {now!r})."
            )
        time.sleep(0.25)
    return output_text(page, index)


def output_text(page, index: int) -> str:
    outputs = cell(page, index).locator(".jp-OutputArea-output")
    return "\n".join(outputs.nth(i).inner_text() for i in range(outputs.count()))


def has_error(page, index: int) -> bool:
    text = output_text(page, index)
    return "Traceback" in text or bool(
        cell(page, index).locator("[data-mime-type='application/vnd.jupyter.error']").count()
    )


def set_cell_source(page, index: int, text: str) -> None:
    """Click into the cell's editor, select all, and type (insert) ``text`` in its place."""
    editor = cell(page, index).locator(".cm-content").first
    editor.scroll_into_view_if_needed(timeout=30_000)
    editor.click(timeout=30_000)
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)
    page.keyboard.press("Escape")


# --------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------
SLIDER = ".widget-slider"
HANDLE = (
    ".noUi-handle, .ui-slider-handle, input[type='range']"  # ipywidgets 8, ipywidgets 7, native
)
_AS_TEXT = (
    r"\b(?:Int|Float|IntRange|FloatRange|FloatLog|SelectionRange)?Slider\("
    r"|\binteractive\(children=|\bVBox\(children="
)


@dataclass
class WidgetCheck:
    ok: bool
    message: str
    output: str = ""


def check_slider_widget(
    page, index: int, description: str | None = None, timeout: float = WIDGET_TIMEOUT
) -> WidgetCheck:
    """Did cell ``index`` render a slider as a live widget (a .widget-slider with a handle)?

    Fails (ok=False) when the output shows the widget's text repr ("FloatSlider(value=...",
    "interactive(children=..."), "Error displaying widget", stays at "Loading widget...",
    or shows no slider at all. ``description``: the slider's label must be this text.
    """
    target = cell(page, index)
    deadline = time.monotonic() + timeout
    label = f"with the label {description!r} " if description else ""
    while True:
        sliders = target.locator(f".jp-OutputArea-output {SLIDER}")
        for i in range(sliders.count()):
            slider = sliders.nth(i)
            if description is not None:
                shown = (
                    slider.locator(".widget-label").first.inner_text().strip()
                    if slider.locator(".widget-label").count()
                    else ""
                )
                if shown != description:
                    continue
            if slider.locator(HANDLE).count() and slider.locator(HANDLE).first.is_visible():
                return WidgetCheck(
                    True, f"cell {index}: the slider {label}rendered as a widget with a handle"
                )
        text = output_text(page, index)
        shown = _shorten(text)
        if re.search(_AS_TEXT, text):
            return WidgetCheck(
                False,
                f"cell {index}: the slider {label}rendered as TEXT, not as a widget: the output "
                f"shows the widget's repr {shown!r}. JupyterLab has no working widget manager: "
                f"check that jupyterlab_widgets matches ipywidgets and that the labextension "
                f"{WIDGETS_EXTENSION} is installed and enabled (jupyter labextension list).",
                text,
            )
        if "Error displaying widget" in text:
            return WidgetCheck(
                False,
                f"cell {index}: the slider {label}did not render: the output says "
                f"{shown!r} (the widget manager failed to create the view; often an "
                f"ipywidgets / jupyterlab_widgets version mismatch).",
                text,
            )
        if time.monotonic() > deadline:
            if "Loading widget" in text:
                return WidgetCheck(
                    False,
                    f"cell {index}: the slider {label}did not render: the output stayed at "
                    f"'Loading widget...' for {timeout:.0f} s (the frontend cannot load the "
                    f"widget's model or view: ipywidgets / jupyterlab_widgets mismatch?).",
                    text,
                )
            return WidgetCheck(
                False,
                f"cell {index}: the slider {label}did not render at all within {timeout:.0f} s: "
                f"no {SLIDER} element with a handle in the output"
                + (f"; the output shows {shown!r}." if text.strip() else " (the output is empty)."),
                text,
            )
        time.sleep(0.5)


def _shorten(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def slider_in(page, index: int, description: str):
    """The slider widget labelled ``description`` in cell ``index``'s output."""
    return (
        cell(page, index)
        .locator(f".jp-OutputArea-output {SLIDER}")
        .filter(has=page.locator(".widget-label", has_text=description))
        .first
    )


def slider_value(slider) -> str:
    readout = slider.locator(".widget-readout")
    if readout.count():
        return readout.first.inner_text().strip()
    return slider.locator(HANDLE).first.get_attribute("aria-valuenow") or ""


def press_slider(page, slider, key: str = "ArrowRight", times: int = 1) -> None:
    """Focus the slider's handle (click on it) and press an arrow key, like a keyboard user."""
    handle = slider.locator(HANDLE).first
    handle.scroll_into_view_if_needed(timeout=30_000)
    handle.click(timeout=30_000)
    for _ in range(times):
        handle.press(key)


_IMAGE_DIGEST_JS = """async (img) => {
  const response = await fetch(img.src);
  const data = await response.arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', data);
  const hex = [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
  return hex + ':' + data.byteLength;
}"""


def image_digest(img) -> str:
    """SHA-256 and size of the bytes behind an <img> (data: or blob: URL), read in the page."""
    return img.evaluate(_IMAGE_DIGEST_JS)


# --------------------------------------------------------------------------------------
# Saving and nbgrader's Validate
# --------------------------------------------------------------------------------------
def save_notebook(page, file: Path, timeout: float = 60) -> None:
    """Ctrl-S in the notebook (command mode); wait until the file on disk is newer."""
    before = file.stat().st_mtime_ns if file.exists() else 0
    page.keyboard.press("Escape")
    page.keyboard.press("ControlOrMeta+s")
    deadline = time.monotonic() + timeout
    while True:
        dirty = page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count()
        if not dirty and file.exists() and file.stat().st_mtime_ns != before:
            return
        if time.monotonic() > deadline:
            raise E2EFailure(
                f"Ctrl-S did not save {file.name} within {timeout:.0f} s "
                f"(tab still marked unsaved: {bool(dirty)})."
            )
        time.sleep(0.25)


@dataclass
class Validation:
    """What nbgrader's validate said: how it was run, its verdict, and the failed cells."""

    how: str  # "toolbar button" or "nbgrader validate CLI"
    verdict: str  # "success", "failed", "changed", "type_changed", "error"
    failed: list[tuple[str, str]]  # (source, error) of every failed cell
    text: str  # everything it showed, for messages


def validate_with_button(page, timeout: float) -> Validation:
    """Click the notebook toolbar's "Validate" (nbgrader labextension) and read its dialog."""
    button = page.locator(f"{PANEL} .jp-NotebookPanel-toolbar jp-button").filter(
        has_text="Validate"
    )
    if not button.count():
        raise E2EFailure(
            f"The notebook toolbar has no 'Validate' button although {NBGRADER_EXTENSION} is "
            f"installed and enabled: the nbgrader labextension did not load in this JupyterLab "
            f"(see nbgrader issue 1948: it breaks with JupyterLab minor versions)."
        )
    button.first.click()
    dialog = page.locator(".jp-Dialog")
    try:
        dialog.first.wait_for(state="visible", timeout=timeout * 1000)
    except Exception:
        label = button.first.inner_text().strip()
        raise E2EFailure(
            f"Validate showed no result within {timeout:.0f} s (the button says {label!r})."
        ) from None
    title = dialog.first.locator(".jp-Dialog-header").inner_text().strip()
    message = dialog.first.locator("#validation-message")
    if title != "Validation Results" or not message.count():
        body = dialog.first.inner_text().strip()
        raise E2EFailure(
            f"Validate did not validate: its dialog says {title!r}: {_shorten(body, 800)!r}"
        )
    found = message.evaluate("""(node) => {
      const kids = [...node.children], failed = [];
      for (let i = 0; i < kids.length; i++) {
        if (kids[i].innerText.trim() === 'The following cell failed:')
          failed.push([kids[i + 1] ? kids[i + 1].innerText : '',
                       kids[i + 2] ? kids[i + 2].innerText : '']);
      }
      return {cls: node.className, text: node.innerText, failed};
    }""")
    verdict = next(
        (
            v
            for v in ("success", "failed", "type-changed", "changed")
            if f"validation-{v}" in found["cls"].split()
        ),
        "error",
    )
    return Validation(
        "toolbar button",
        verdict.replace("-", "_"),
        [tuple(f) for f in found["failed"]],
        found["text"],
    )


def close_dialog(page) -> None:
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if accept.count():
        accept.first.click()


def validate_with_cli(server: LabServer, path: str, timeout: float) -> Validation:
    """`nbgrader validate` on the saved file, where the server runs (same folder, config, env)."""
    nbgrader = Path(sys.executable).parent / "nbgrader"
    command = [str(nbgrader) if nbgrader.exists() else "nbgrader", "validate", path]
    done = subprocess.run(
        command, cwd=server.root, env=server.env, capture_output=True, text=True, timeout=timeout
    )
    out = done.stdout + done.stderr
    blocks = out.split("The following cell failed:")[1:]
    failed = []
    for block in blocks:
        source, _, rest = block.partition("The error was:")
        failed.append((source.strip(), rest.split("=" * 20)[0].strip()))
    if "Success! Your notebook passes all the tests." in out:
        verdict = "success"
    elif failed:
        verdict = "failed"
    elif "The following cell has changed" in out:
        verdict = "changed"
    else:
        verdict = "error"
    return Validation("nbgrader validate CLI", verdict, failed, out)


def grade_cell_signature(source: str) -> str:
    """A short line that identifies a test cell in validate's report (which may cut long lines)."""
    match = re.search(r'passed\((["\']).*?\1\)', source)
    if match:
        return match.group(0)
    lines = [
        line.strip()
        for line in source.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    return lines[0][:60] if lines else source.strip()[:60]
