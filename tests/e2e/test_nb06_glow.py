"""Notebook 06 (Glow on MNIST) as a student uses it, in a real browser.

The steps share one page and one kernel, in this order (a step whose prerequisite failed
is skipped and says so):

1. open the student notebook, run the cells above Exercise 6.1 with shift-enter, type the
   solution (taken from the instructor notebook's solution region) into the exercise cell,
   run it and its test cell, and read "✓ Exercise 6.1 (flow step): all visible checks
   passed." from the page;
2. run the cells down to the sampling cell: it must draw its figure of samples;
3. run the temperature-slider cell: the slider must be a live widget, and two right-arrow
   presses on its handle must change the sample image (bytes behind the <img>);
4. validate with nbgrader: the toolbar's "Validate" button of the nbgrader labextension
   when `jupyter labextension list` says @jupyter/nbgrader is enabled (then a missing or
   broken button FAILS the test: that is nbgrader issue 1948), else ctrl-s and
   `nbgrader validate` on the saved file. Either way the filled exercise's test must pass
   and the tests of the exercises left as stubs must fail.

Screenshots of each step: test-artifacts/e2e/nb06_glow/.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import pytest
from labdriver import (
    NBGRADER_EXTENSION,
    REPO,
    CellInfo,
    E2EFailure,
    Shots,
    cell,
    cell_by_grade_id,
    check_cell_count,
    check_slider_widget,
    close_dialog,
    grade_cell_signature,
    has_error,
    image_digest,
    labextension_state,
    new_page,
    notebook_cells,
    open_notebook,
    output_text,
    press_slider,
    run_cell,
    save_notebook,
    set_cell_source,
    slider_in,
    slider_value,
    solution_text,
    validate_with_button,
    validate_with_cli,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NB06 = "06_glow_mnist/06_glow_mnist.ipynb"
SOLUTIONS = REPO / "solutions" / NB06
EXERCISE, EXERCISE_TESTS = "nb06_flow_step", "nb06_flow_step_tests"  # Exercise 6.1 (flow step)
SAMPLES, TEMPERATURE = "nb06_samples", "nb06_temperature"
SLIDER_LABEL = "temperature"
VALIDATE_TIMEOUT = 900  # it runs the whole notebook again, on a busy 2-core machine


@dataclass(repr=False)
class Nb06:
    page: object
    server: object
    shots: Shots
    cells: list[CellInfo]
    done: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)
    ran: set = field(default_factory=set)

    def __repr__(self) -> str:
        return f"<notebook 06 in the browser; steps passed: {sorted(self.done)}>"

    def cell(self, grade_id: str) -> CellInfo:
        return cell_by_grade_id(self.cells, grade_id, f"The student notebook {NB06}")

    def require(self, step: str) -> None:
        if step not in self.done:
            pytest.skip(
                f"needs the step {step!r}, which did not pass: "
                f"{self.failed.get(step, 'it did not run')}"
            )

    def run(self, index: int) -> str:
        """Shift-enter on one cell; its time and outcome go to test-artifacts/e2e/nb06_glow/."""
        start = time.monotonic()
        out = run_cell(self.page, index, shots=self.shots)
        self.ran.add(index)
        c = self.cells[index]
        what = c.grade_id or (c.source.strip().splitlines() or [""])[0][:60]
        with open(self.shots.folder / "cells.txt", "a") as log:
            log.write(
                f"cell {index:3d}  {time.monotonic() - start:6.1f} s  "
                f"{'ERROR' if has_error(self.page, index) else 'ok   '}  {what}\n"
            )
        return out

    def run_through(self, last: int) -> None:
        """Run every code cell up to ``last`` that has not run yet, in order, one at a time.

        A cell may fail only because an exercise left as a stub is used (NotImplementedError,
        raised directly or through flowlib.notebook_helpers.needs); any other error fails the test.
        """
        for c in self.cells:
            if c.cell_type != "code" or c.index > last or c.index in self.ran:
                continue
            out = self.run(c.index)
            if has_error(self.page, c.index) and "NotImplementedError" not in out:
                self.shots(f"cell-{c.index}-error")
                what = c.grade_id or c.source.strip().splitlines()[0][:70]
                raise E2EFailure(
                    f"{NB06}: cell {c.index} ({what}) raised an error that is not an "
                    f"unfinished exercise:\n{out[-2500:]}"
                )


@pytest.fixture(scope="module")
def nb06(browser, lab):
    context, page = new_page(browser)
    try:
        shots = Shots(page, "nb06_glow")
        cells = notebook_cells(lab.root / NB06)
        open_notebook(page, lab, NB06, shots)
        check_cell_count(page, len(cells), NB06)
        shots("opened")
        yield Nb06(page, lab, shots, cells)
    finally:
        context.close()
        lab.shutdown_kernels()


def _step(nb06: Nb06, name: str):
    """Record whether a step passed, for the steps after it."""

    class Recorder:
        def __enter__(self):
            return self

        def __exit__(self, kind, error, tb):
            if error is None:
                nb06.done.add(name)
            else:
                nb06.failed[name] = f"{kind.__name__}: {' '.join(str(error).split())[:300]}"
            return False

    return Recorder()


def test_1_typed_solution_passes_the_visible_test(nb06):
    with _step(nb06, "exercise"):
        exercise, tests = nb06.cell(EXERCISE), nb06.cell(EXERCISE_TESTS)
        if not SOLUTIONS.is_file():
            raise E2EFailure(
                f"The instructor notebook {SOLUTIONS} is missing: the solution is taken from it."
            )
        solution = solution_text(
            cell_by_grade_id(
                notebook_cells(SOLUTIONS), EXERCISE, f"The instructor notebook {SOLUTIONS}"
            ).source
        )
        exercise_name = re.search(r'passed\(\s*["\'](.+?)["\']\s*\)', tests.source)
        if not exercise_name:
            raise E2EFailure(
                f'The test cell {EXERCISE_TESTS} does not call passed("..."): no pass '
                f"message to look for."
            )
        expected = f"✓ {exercise_name.group(1)}: all visible checks passed."

        nb06.run_through(exercise.index - 1)
        nb06.shots("cells-above-exercise-ran")
        if "NotImplementedError" not in "".join(exercise.source):
            raise E2EFailure(
                f"The student's exercise cell {EXERCISE} has no NotImplementedError stub: "
                f"is {NB06} the student version?"
            )
        set_cell_source(nb06.page, exercise.index, solution)
        nb06.shots("solution-typed")
        shown = cell(nb06.page, exercise.index).locator(".cm-content").first.inner_text()
        if "NotImplementedError" in shown:
            raise E2EFailure(
                "After select-all and typing, the exercise cell still shows the "
                f"stub:\n{shown[:1500]}"
            )
        wanted = [line.rstrip() for line in solution.splitlines() if line.strip()]
        got = [line.rstrip() for line in shown.splitlines() if line.strip()]
        if got != wanted:
            raise E2EFailure(
                "The exercise cell does not show the typed solution.\nExpected:\n"
                + "\n".join(wanted)
                + "\nShown:\n"
                + "\n".join(got)
            )

        out = nb06.run(exercise.index)
        if has_error(nb06.page, exercise.index):
            raise E2EFailure(
                f"Running the typed solution (cell {exercise.index}) raised:\n{out[-2000:]}"
            )
        out = nb06.run(tests.index)
        cell(nb06.page, tests.index).scroll_into_view_if_needed()
        nb06.shots("test-cell-ran")
        assert expected in out, (
            f"The test cell {EXERCISE_TESTS} did not print {expected!r} after the "
            f"solution was typed in. Its output:\n{out[-2500:]}"
        )


def test_2_sampling_cell_draws_samples(nb06):
    with _step(nb06, "samples"):
        samples = nb06.cell(SAMPLES)
        nb06.run_through(samples.index)
        cell(nb06.page, samples.index).scroll_into_view_if_needed()
        nb06.shots("samples")
        assert not has_error(nb06.page, samples.index), (
            f"The sampling cell ({SAMPLES}) "
            f"raised:\n{output_text(nb06.page, samples.index)[-2500:]}"
        )
        images = cell(nb06.page, samples.index).locator(".jp-OutputArea-output img")
        assert images.count() >= 1, (
            f"The sampling cell ({SAMPLES}) ran but shows no image; its output: "
            f"{output_text(nb06.page, samples.index)[-1000:]!r}"
        )


def test_3_temperature_slider_changes_the_samples(nb06):
    nb06.require("samples")
    with _step(nb06, "slider"):
        target = nb06.cell(TEMPERATURE)
        nb06.run_through(target.index)
        result = check_slider_widget(nb06.page, target.index, SLIDER_LABEL)
        cell(nb06.page, target.index).locator(
            ".jp-OutputArea-output"
        ).first.scroll_into_view_if_needed()
        nb06.shots("temperature-slider" if result.ok else "temperature-slider-NOT-rendered")
        assert result.ok, result.message

        slider = slider_in(nb06.page, target.index, SLIDER_LABEL)
        image = cell(nb06.page, target.index).locator(".jp-OutputArea-output img").first
        assert image.count(), (
            f"The temperature cell ({TEMPERATURE}) shows a slider but no sample image; "
            f"output: {output_text(nb06.page, target.index)[-1000:]!r}"
        )
        folder = nb06.shots.folder
        before_png = image.screenshot(path=str(folder / "samples-before.png"))
        value_before, digest_before = slider_value(slider), image_digest(image)
        press_slider(nb06.page, slider, "ArrowRight", times=2)
        deadline, digest_after = time.monotonic() + 120, digest_before
        while time.monotonic() < deadline and digest_after == digest_before:
            time.sleep(0.5)
            digest_after = image_digest(image)
        value_after = slider_value(slider)
        after_png = image.screenshot(path=str(folder / "samples-after.png"))
        slider.scroll_into_view_if_needed()
        nb06.shots("temperature-moved")
        assert value_after != value_before, (
            f"Two right-arrow presses on the temperature slider's handle did not change its value "
            f"(still {value_before!r})."
        )
        assert digest_after != digest_before, (
            f"The temperature slider moved ({value_before} -> {value_after}) but the sample "
            "image did not "
            "change within 120 s (same image bytes): the slider's observer did not redraw the "
            "samples."
        )
        assert after_png != before_png, (
            f"The sample image's data changed ({value_before} -> {value_after}) but it looks "
            "the same on "
            f"screen (identical screenshots {folder}/samples-before.png and samples-after.png)."
        )


def test_4_nbgrader_validate_passes_the_filled_exercise(nb06, record_property):
    nb06.require("exercise")
    page, server = nb06.page, nb06.server
    enabled, line = labextension_state(NBGRADER_EXTENSION, server.env)
    how = "toolbar button" if enabled else "nbgrader validate CLI"
    if enabled:
        note = (
            "validate path: the nbgrader 'Validate' toolbar button "
            f"(`jupyter labextension list`: {line})"
        )
    else:
        note = (
            "validate path: ctrl-s, then `nbgrader validate` on the saved file, because the "
            "nbgrader "
            f"labextension is not available ({line})"
        )
    print(note)
    record_property("validate_path", how)
    (nb06.shots.folder / "validate-path.txt").write_text(note + "\n")

    notebook = server.root / NB06
    save_notebook(page, notebook)
    saved = cell_by_grade_id(notebook_cells(notebook), EXERCISE, f"The saved {NB06}")
    solution = solution_text(
        cell_by_grade_id(notebook_cells(SOLUTIONS), EXERCISE, str(SOLUTIONS)).source
    )
    assert saved.source.strip() == solution.strip(), (
        "The notebook saved by ctrl-s does not hold the typed solution in the exercise cell:\n"
        + saved.source
    )

    if enabled:
        try:
            result = validate_with_button(page, VALIDATE_TIMEOUT)
        finally:
            nb06.shots("validate-dialog")
            close_dialog(page)
    else:
        result = validate_with_cli(server, NB06, VALIDATE_TIMEOUT)
    (nb06.shots.folder / "validate-output.txt").write_text(
        f"{how}: {result.verdict}\n\n{result.text}"
    )

    assert result.verdict in ("success", "failed"), (
        f"nbgrader validate ({how}) did not judge the tests: verdict "
        f"{result.verdict!r}:\n{result.text[-3000:]}"
    )
    failed_sources = [source for source, _ in result.failed]
    filled = nb06.cell(EXERCISE_TESTS)
    mine = grade_cell_signature(filled.source)
    for source, error in result.failed:
        assert mine not in source, (
            f"nbgrader validate ({how}) reports the test of the filled exercise "
            f"({EXERCISE_TESTS}) as "
            f"FAILED:\n{error[-2500:]}"
        )
    stubs = [c for c in nb06.cells if c.is_test and c.grade_id != EXERCISE_TESTS]
    not_caught = [
        c.grade_id
        for c in stubs
        if not any(grade_cell_signature(c.source) in s for s in failed_sources)
    ]
    assert not not_caught, (
        f"nbgrader validate ({how}) did not report the tests {not_caught} as failed, although "
        "their "
        "exercises are still the NotImplementedError stubs: it is not judging the notebook. "
        "It said:\n"
        f"{result.text[-3000:]}"
    )
