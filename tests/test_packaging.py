"""Packaging: pyproject.toml and environment.yml name the same dependencies; shipped configs."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda package name -> pip name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _name(r) for r in project["dependencies"] + project["optional-dependencies"]["course"]
    }
    listed = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:") :].splitlines():
        m = re.match(r"\s+- ([A-Za-z][\w.-]*)", line)
        if m and not line.strip().startswith("- -e"):
            listed.add(CONDA_NAMES.get(_name(m.group(1)), _name(m.group(1))))
    listed -= {"python", "pip"}
    assert wanted == listed, (
        f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    )


def test_students_validate_with_the_graders_cell_timeout():
    """notebooks/nbgrader_config.py (read by JupyterLab's Validate button, `make lab` starts
    there) gives each cell as long as grading does, not nbgrader's default 30 s."""
    from traitlets.config.loader import PyFileConfigLoader

    def timeout(folder):
        return (
            PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / folder))
            .load_config()
            .Execute.timeout
        )

    assert timeout("notebooks") == timeout("autograder") == 300
    assert "cd notebooks" in (ROOT / "Makefile").read_text().split("\nlab:")[1].split("\n\n")[0]
