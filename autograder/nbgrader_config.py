"""nbgrader configuration of the flows course.

Run nbgrader from this folder (``cd autograder``), or use ``python -m autograder``.
The instructor notebooks in ../solutions are nbgrader's source, the student
notebooks in ../notebooks its release: one assignment per notebook.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.course_id = "flows"
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'autograder' / 'gradebook.db'}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

# Exercise cells in the student version
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\n"
    'raise NotImplementedError("Exercise not done yet: write your code here.")'
}
c.ClearSolutions.enforce_metadata = True

# Grading: a cell that runs over the timeout is interrupted and scores 0.
c.Execute.timeout = 300
c.ExecutePreprocessor.timeout = 300
c.Execute.interrupt_on_timeout = True
# Deleted test cells come back from the gradebook instead of only being flagged.
c.OverwriteCells.add_missing_cells = True
# Feedback never shows hidden tests unless the instructor asks for it.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    "nbgrader.preprocessors.ClearHiddenTests",
]
