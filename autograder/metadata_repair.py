"""Notebooks that lost their nbgrader metadata (cells copied into a new notebook, a
"clear metadata" tool, another editor): give their cells back the release's metadata.

The release's cells that a student does not edit (markdown, locked code, visible
tests) are found in the submission by their content, in order; each exercise cell of
the release is then the one code cell between the same two neighbours. When that is
not one cell, the submission cannot be matched and is held for the instructor.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path


def _meta(cell: dict) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _key(cell: dict) -> tuple[str, str]:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else str(source)
    return str(cell.get("cell_type")), source.strip()


def needs_repair(submitted: dict, release: dict) -> bool:
    """True when none of the release's graded or exercise cells is named in the submission."""
    wanted = {_meta(c).get("grade_id") for c in release["cells"] if _meta(c).get("grade_id")}
    have = {_meta(c).get("grade_id") for c in submitted.get("cells", []) if isinstance(c, dict)}
    return bool(wanted) and not wanted & have


def match_cells(submitted: list[dict], release: list[dict]) -> dict[int, int] | None:
    """{submission index: release index} for every release cell with nbgrader metadata
    that can be placed; None when an exercise cell is ambiguous."""
    fixed = [i for i, c in enumerate(release) if not _meta(c).get("solution")]
    matcher = difflib.SequenceMatcher(
        None, [_key(release[i]) for i in fixed], [_key(c) for c in submitted], autojunk=False
    )
    anchors = {}  # release index -> submission index
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            anchors[fixed[block.a + k]] = block.b + k
    placed = {s: r for r, s in anchors.items() if _meta(release[r])}
    for r, cell in enumerate(release):
        if not _meta(cell).get("solution"):
            continue
        before = max((s for rr, s in anchors.items() if rr < r), default=-1)
        after = min((s for rr, s in anchors.items() if rr > r), default=len(submitted))
        between = [
            s
            for s in range(before + 1, after)
            if s not in anchors.values() and submitted[s].get("cell_type") == cell.get("cell_type")
        ]
        if len(between) != 1:
            return None
        placed[between[0]] = r
    return placed


def drop_duplicate_ids(cells: list[dict]) -> bool:
    """Remove the nbgrader metadata of every later cell that repeats a grade id (a
    duplicated cell); nbgrader 0.9.6 would fail on it with ``KeyError: 'grade_id'``.
    True when something was removed."""
    seen, changed = set(), False
    for cell in cells:
        grade_id = _meta(cell).get("grade_id")
        if grade_id in seen:
            cell["metadata"].pop("nbgrader")
            changed = True
        elif grade_id:
            seen.add(grade_id)
    return changed


def restore_metadata(path: Path, release_notebook: Path, dest_dir: Path) -> Path | None:
    """``path`` itself when its metadata is fine; a mended copy in ``dest_dir`` (metadata
    restored, or duplicated grade ids dropped); None when its cells cannot be matched."""
    try:
        submitted = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path  # notebook_problem() reports it
    if not isinstance(submitted, dict) or not isinstance(submitted.get("cells"), list):
        return path
    release = json.loads(release_notebook.read_text(encoding="utf-8"))
    cells = [c for c in submitted["cells"] if isinstance(c, dict)]
    changed = drop_duplicate_ids(cells)
    if needs_repair(submitted, release):
        placed = match_cells(cells, release["cells"])
        if placed is None:
            return None
        for s, r in placed.items():
            cells[s].setdefault("metadata", {})["nbgrader"] = copy.deepcopy(
                _meta(release["cells"][r])
            )
        changed = True
    if not changed:
        return path
    submitted["cells"] = cells
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / path.name
    dest.write_text(json.dumps(submitted, indent=1))
    return dest
