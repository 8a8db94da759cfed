"""Notebook 01 in a real browser: its slider must render as a live widget.

An ipywidgets / jupyterlab_widgets mismatch, or a missing widget manager labextension,
shows a slider as plain text ("interactive(children=(FloatSlider(value=...") or leaves
it at "Loading widget..." forever. nbval cannot see that; a browser can.

The second test keeps the check honest: on a server whose widget manager is disabled
(`jupyter labextension disable @jupyter-widgets/jupyterlab-manager`, in a private
JUPYTER_CONFIG_DIR) the same check must report that the slider did not render.
"""

from __future__ import annotations

import re
import time

import pytest
from labdriver import (
    E2EFailure,
    Shots,
    cell,
    check_cell_count,
    check_slider_widget,
    has_error,
    image_digest,
    notebook_cells,
    open_notebook,
    output_text,
    press_slider,
    run_cell,
    slider_in,
    slider_value,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NB01 = "01_change_of_variables/01_change_of_variables.ipynb"


def run_up_to_first_slider(page, server, shots):
    """Open notebook 01 and run its code cells, in order, up to the first one that makes a slider.

    Returns (index of that cell, the slider's description).
    """
    cells = notebook_cells(server.root / NB01)
    sliders = [c for c in cells if c.cell_type == "code" and re.search(r"\w*Slider\(", c.source)]
    if not sliders:
        raise E2EFailure(
            f"{NB01} has no code cell that creates a slider (no '...Slider(' in any cell)."
        )
    target = sliders[0]
    description = re.search(r"description\s*=\s*[\"']([^\"']+)[\"']", target.source)
    open_notebook(page, server, NB01, shots)
    check_cell_count(page, len(cells), NB01)
    shots("opened")
    for c in cells:
        if c.cell_type != "code" or c.index > target.index:
            continue
        out = run_cell(page, c.index, shots=shots)
        if has_error(page, c.index):
            shots(f"cell-{c.index}-error")
            raise E2EFailure(
                f"{NB01}: cell {c.index} raised an error before the slider cell:\n{out[-2000:]}"
            )
    return target.index, description.group(1) if description else None


def test_nb01_slider_renders_as_a_widget_and_responds(page, lab):
    shots = Shots(page, "nb01_slider")
    try:
        index, description = run_up_to_first_slider(page, lab, shots)
        result = check_slider_widget(page, index, description)
        cell(page, index).scroll_into_view_if_needed()
        shots("slider-rendered" if result.ok else "slider-NOT-rendered")
        assert result.ok, result.message

        # The widget is live: two steps to the right change its value and redraw the figure.
        slider = slider_in(page, index, description)
        figure = cell(page, index).locator(".jp-OutputArea-output img").first
        if not figure.count():
            raise E2EFailure(
                f"{NB01}: the slider cell (cell {index}) drew no figure under its slider; "
                f"output: {output_text(page, index)[:500]!r}"
            )
        value_before, figure_before = slider_value(slider), image_digest(figure)
        press_slider(page, slider, "ArrowRight", times=2)
        deadline, figure_after = time.monotonic() + 90, figure_before
        while time.monotonic() < deadline:
            images = cell(page, index).locator(".jp-OutputArea-output img")
            if images.count():
                try:
                    figure_after = image_digest(images.first)
                except Exception:  # replaced while we read it
                    pass
            if figure_after != figure_before:
                break
            time.sleep(0.5)
        value_after = slider_value(slider)
        shots("slider-moved")
        assert value_after != value_before, (
            f"Two right-arrow presses on the {description!r} slider's handle did not change "
            "its value "
            f"(still {value_before!r}): the slider is drawn but does not respond."
        )
        assert figure_after != figure_before, (
            f"The {description!r} slider moved ({value_before} -> {value_after}) but the "
            "figure under it "
            "did not change within 90 s: the widget does not reach the kernel (comm) or the "
            "callback failed. "
            f"Output: {output_text(page, index)[-800:]!r}"
        )
    finally:
        lab.shutdown_kernels()


def test_widget_check_reports_a_broken_widget_manager(page, lab_without_widgets):
    """The negative control: without the widget manager the check must FAIL, saying why."""
    shots = Shots(page, "nb01_slider_without_widget_manager")
    try:
        index, description = run_up_to_first_slider(page, lab_without_widgets, shots)
        result = check_slider_widget(page, index, description, timeout=30)
        cell(page, index).scroll_into_view_if_needed()
        shots("slider-as-text")
        assert not result.ok, (
            "The widget check PASSED on a JupyterLab whose widget manager "
            "(@jupyter-widgets/jupyterlab-manager) is disabled: the check cannot tell a widget "
            "from "
            f"its text. It said: {result.message}"
        )
        assert "rendered as TEXT" in result.message or "did not render" in result.message, (
            result.message
        )
        print("negative control, as expected:", result.message)
    finally:
        lab_without_widgets.shutdown_kernels()
