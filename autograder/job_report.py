"""What a grading job reports to the batch, typed and validated on the way in.

The job writes it as ``result.json`` in its own folder (which no sandbox mounts); the
batch reads it back with :meth:`JobReport.from_json`, which accepts only the expected
fields and types: anything else makes the report a failed one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

GRADED = "graded"
FAILED = "error"


@dataclass
class CellScore:
    score: float | None = None  # nbgrader's auto score
    error: str | None = None  # first line of the cell's error


@dataclass
class JobReport:
    status: str  # GRADED or FAILED
    reason: str = ""  # why it failed
    cells: dict[str, CellScore] = field(default_factory=dict)  # by grade id
    cell_errors: list[dict] = field(default_factory=list)  # errors outside graded cells
    tampering: list[str] = field(default_factory=list)  # machinery changed at run time
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase
    feedback_error: str = ""
    nonce: str = ""

    @classmethod
    def failed(cls, reason: str) -> JobReport:
        return cls(FAILED, reason=reason)

    @property
    def graded(self) -> bool:
        return self.status == GRADED

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> JobReport:
        """The report in ``text``; a failed report when it is not a well-formed one."""
        try:
            data = json.loads(text)
            return cls._checked(data)
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            return cls.failed(f"the grading job's report is malformed ({type(err).__name__})")

    @classmethod
    def _checked(cls, data: dict) -> JobReport:
        cells = {
            str(k): CellScore(
                float(v["score"]) if isinstance(v.get("score"), (int, float)) else None,
                str(v["error"])[:300] if v.get("error") is not None else None,
            )
            for k, v in dict(data.get("cells", {})).items()
        }
        errors = [
            {"cell": str(e.get("cell", ""))[:100], "error": str(e.get("error", ""))[:300]}
            for e in list(data.get("cell_errors", []))[:50]
        ]
        timings = {
            str(k): float(v)
            for k, v in dict(data.get("timings", {})).items()
            if isinstance(v, (int, float))
        }
        return cls(
            status=GRADED if data["status"] == GRADED else FAILED,
            reason=str(data.get("reason", ""))[:500],
            cells=cells,
            cell_errors=errors,
            tampering=[str(x)[:200] for x in list(data.get("tampering", []))[:50]],
            timings=timings,
            feedback_error=str(data.get("feedback_error", ""))[:300],
            nonce=str(data.get("nonce", "")),
        )
