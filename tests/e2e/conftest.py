"""Fixtures of the end-to-end (browser) tests: Chromium, a JupyterLab server, pages.

Every test here is marked ``e2e`` (and ``slow``). They need Debian's Chromium at
/usr/bin/chromium (FLOWLIB_E2E_CHROMIUM overrides the path) and the Playwright Python
package. Without them the tests are SKIPPED, with the reason, on a developer's machine,
and FAIL in CI (env CI set to anything but ""/0/false/no; GitHub Actions and GitLab set
CI=true, .ci/run must export it): CI must never go green by skipping them.

The server runs on a temporary copy of the student notebooks (notebooks/;
FLOWLIB_E2E_NOTEBOOKS overrides that folder) with FLOWLIB_FAST=1 and FLOWLIB_DATA set, and
is always shut down, kernels included, whatever happens in the tests. Screenshots and
the server's log go to test-artifacts/e2e/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from labdriver import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, REPO, LabServer, new_page

E2E_NOTEBOOKS = ("01_change_of_variables", "06_glow_mnist")

# nbgrader's Validate reads nbgrader_config.py from the folder JupyterLab runs in: the
# student folder ships one (notebooks/nbgrader_config.py, 300 s a cell like grading).
VALIDATE_CONFIG = REPO / "notebooks" / "nbgrader_config.py"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end-to-end tests in a real browser (Chromium + JupyterLab); slow"
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _missing(what: str) -> None:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(
            f"{what} The end-to-end tests must run in CI (env CI={os.environ.get('CI')!r}).",
            pytrace=False,
        )
    pytest.skip(f"{what} (skipped because env CI is not set; in CI this fails)")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(
            f"No Chromium at {CHROMIUM}: install Debian's chromium (apt-get install -y chromium)."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing(
            "The Python package playwright is not installed (pip install playwright; its own "
            "browser download is not needed)."
        )
    # The tests will run: test-artifacts/e2e/ gets the screenshots and logs of this run only.
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path):
    """Debian's Chromium, headless, driven by Playwright; closed at the end of the session."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), args=CHROMIUM_FLAGS, headless=True, timeout=120_000
        )
    except Exception:
        playwright.stop()
        raise
    try:
        yield browser
    finally:
        try:
            browser.close()
        finally:
            playwright.stop()


@pytest.fixture(scope="session")
def student_notebooks() -> Path:
    """The folder of student notebooks the server copies (notebooks/ of this checkout)."""
    folder = Path(os.environ.get("FLOWLIB_E2E_NOTEBOOKS", REPO / "notebooks"))
    missing = [
        f"{folder}/{name}/{name}.ipynb"
        for name in E2E_NOTEBOOKS
        if not (folder / name / f"{name}.ipynb").is_file()
    ]
    if missing:
        pytest.fail(
            "The student notebooks the browser tests open are missing: "
            + ", ".join(missing)
            + ". Build them (notebook_src/README.md: tools/build_notebooks.py, then nbgrader "
            "generate_assignment), or point FLOWLIB_E2E_NOTEBOOKS at a folder that has them.",
            pytrace=False,
        )
    return folder


def copy_course(source: Path, target: Path) -> Path:
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    )
    if not (target / "nbgrader_config.py").exists():  # a FLOWLIB_E2E_NOTEBOOKS folder without one
        shutil.copy(VALIDATE_CONFIG, target / "nbgrader_config.py")
    return target


def start_server(tmp: Path, notebooks: Path, data: Path | None, name: str, **kw) -> LabServer:
    """JupyterLab on a copy of ``notebooks``; ``data`` None: the embedded subsets."""
    server = LabServer(
        copy_course(notebooks, tmp / "course"),
        tmp / "jupyter",
        name=name,
        env={"FLOWLIB_DATA": str(data)} if data else {},
        **kw,
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def lab(chromium_path, student_notebooks, notebook_data, tmp_path_factory):
    """`jupyter lab` on a temporary copy of the student notebooks; always shut down."""
    server = start_server(tmp_path_factory.mktemp("lab"), student_notebooks, notebook_data, "lab")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lab_without_widgets(chromium_path, student_notebooks, notebook_data, tmp_path_factory):
    """The same, with the widget manager disabled (`jupyter labextension disable`)."""
    server = start_server(
        tmp_path_factory.mktemp("lab-no-widgets"),
        student_notebooks,
        notebook_data,
        "lab-no-widgets",
        disabled_labextensions=("@jupyter-widgets/jupyterlab-manager",),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def screenshot_if_failed(request, page) -> None:
    """A last screenshot when the test failed: test-artifacts/e2e/<test>-FAILED.png."""
    report = getattr(request.node, "rep_call", None)
    if report is None or not report.failed or page is None:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-FAILED.png"), timeout=30_000)
    except Exception:
        pass


@pytest.fixture
def page(browser, request):
    """A page in a fresh browser context; screenshot on failure; closed after the test."""
    context, page = new_page(browser)
    try:
        yield page
    finally:
        screenshot_if_failed(request, page)
        context.close()


@pytest.fixture(autouse=True)
def _screenshot_module_page_on_failure(request):
    """The same for tests that share one page across a module (fixture with a .page)."""
    yield
    for name in request.fixturenames:
        holder = request.node.funcargs.get(name)
        if name != "page" and hasattr(holder, "page") and hasattr(holder.page, "screenshot"):
            screenshot_if_failed(request, holder.page)
            return
