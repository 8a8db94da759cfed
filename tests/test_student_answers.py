"""Students' answers against every graded exercise's visible and hidden tests.

Mutation testing of the checks (tests/student_answers/): for each exercise, typical wrong
answers, each with the hint its visible check must give (and the hidden tests must fail it
too), and correct answers written another way, which must pass both the visible and the
hidden tests. Each notebook is executed once, in-process, in fast mode (see harness.py).
"""
import pytest
from student_answers import harness, nb01, nb02, nb03, nb04, nb05, nb06, nb07

CASES = [case for module in (nb01, nb02, nb03, nb04, nb05, nb06, nb07) for case in module.CASES]
pytestmark = [pytest.mark.slow]  # the full data where it is found, else data/embedded/


def _notebook(case):
    return case.exercise[2:4]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_student_answer(case, notebook_data):
    session = harness.session(_notebook(case))
    visible = session.run(case, "visible")
    hidden = session.run(case, "hidden")
    if case.hint is None:
        assert visible.passed and "all visible checks passed" in visible.message, (
            f"a correct answer fails the visible checks: {visible.message}")
        assert hidden.passed, f"a correct answer fails the hidden tests: {hidden.message}"
        return
    assert not visible.passed, f"a wrong answer passes the visible checks: {visible.message!r}"
    assert case.hint in visible.message, f"expected the hint {case.hint!r}, got: {visible.message}"
    if case.hidden_catches:
        assert not hidden.passed, "a wrong answer passes the hidden tests"
        assert "[line:" in hidden.message and hidden.message.split("[line:")[0].strip() not in (
            "AssertionError:",), f"the hidden test fails without a label: {hidden.message}"


def test_every_graded_exercise_has_cases():
    """At least five wrong answers and two correct ones for every graded exercise.

    The course has 21, each with one graded test cell.
    """
    paths = sorted(harness.ROOT.glob("solutions/[0-9]*/*.ipynb"))
    cells = [meta for path in paths for _, meta in harness._cells(path)]
    exercises = [meta["grade_id"] for meta in cells if meta.get("solution")]
    graded = [meta["grade_id"] for meta in cells if meta.get("grade")]
    assert len(exercises) == len(graded) == 21, (exercises, graded)
    counts = {ex: [0, 0] for ex in exercises}
    for case in CASES:
        counts[case.exercise][case.hint is None] += 1
    thin = {ex: f"{wrong} wrong, {right} correct" for ex, (wrong, right) in counts.items()
            if wrong < 5 or right < 2}
    assert not thin, f"exercises with fewer than 5 wrong or 2 correct answers: {thin}"
