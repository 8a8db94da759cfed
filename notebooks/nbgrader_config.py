"""nbgrader settings for students: the Validate button in JupyterLab reads this file from
the folder JupyterLab was started in (`make lab` starts it here).

Validate runs the whole notebook in fast mode (nbgrader sets NBGRADER_EXECUTION). Its
per-cell timeout is the autograder's, 300 s, so Validate judges an exercise the way
grading will; nbgrader's own default, 30 s, is too short for the training cells on a
laptop CPU.
"""
c = get_config()  # noqa: F821 (provided by nbgrader)
c.Execute.timeout = 300
