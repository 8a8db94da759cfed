"""Find the submissions in what an instructor downloaded, and say whose each one is.

Accepted layouts (they can be mixed, and a ``.zip`` of any of them works the same):

==============================================  =========================================
file                                            student, notebook
==============================================  =========================================
``alice/01_change_of_variables.ipynb``          alice (the folder names the student)
``submitted/alice/01_change_of_variables/``     alice: nbgrader's own layout; a
``01_change_of_variables.ipynb``                ``timestamp.txt`` beside it is used
``alice_01_change_of_variables.ipynb``          alice (``alice-01_...`` too)
``jdoe_12345_67890_01_change_of_variables``     jdoe: Canvas (``name_[late_]userid_
``.ipynb``                                      submissionid_file``); a name used by two
                                                Canvas user ids becomes ``name_userid``
``Jane Doe_123456_assignsubmission_file_``      123456 (the Moodle participant id),
``01_change_of_variables.ipynb``                as a file name or as a folder name
==============================================  =========================================

A copy suffix such as ``-1`` (Canvas re-upload) or `` (2)`` is allowed after the
notebook name. When one student has several files for one notebook, the newest
(timestamp, then copy number, then modification time) is graded and the others are
reported as superseded. Every file that is not graded is reported with the reason;
nothing is dropped silently.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .course import GradingError

SEPARATOR = r"[_\-\s]"
CANVAS = re.compile(
    r"^(?P<name>[A-Za-z0-9]+?)(?:_late)?_(?P<uid>\d+)_(?P<sub>\d+)_?$", re.IGNORECASE
)
MOODLE = re.compile(r"^(?P<full>.+?)_(?P<pid>\d+)_assignsubmission_[a-z]+_?$", re.IGNORECASE)
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
MAX_ZIP_BYTES = 4 << 30
MAX_NOTEBOOK_BYTES = 100 << 20


@dataclass
class Submission:
    """A notebook attributed to a student."""

    student: str
    notebook: str
    path: Path
    origin: str  # where it came from, as the instructor would name it
    timestamp: str | None = None
    copy: int = 0
    lms_id: str | None = None  # Canvas user id or Moodle participant id
    lms: str | None = None  # "canvas" or "moodle": whose id lms_id is

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def order(self) -> tuple:
        return (self.timestamp or "", self.copy, self.path.stat().st_mtime)


@dataclass
class Rejected:
    """A file that is not graded, and why."""

    origin: str
    reason: str
    student: str | None = None
    notebook: str | None = None


@dataclass
class Collection:
    submissions: list[Submission] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def check_sources(sources: list[Path]) -> None:
    """Raise GradingError for a source that is neither a folder nor a .zip file."""
    for source in map(Path, sources):
        if source.is_dir() or (source.is_file() and zipfile.is_zipfile(source)):
            continue
        if source.exists():
            raise GradingError(f"{source} is neither a folder nor a .zip file")
        raise GradingError(f"no such folder or file: {source}")


def collect(sources: list[Path], notebooks: list[str], unpack_dir: Path) -> Collection:
    """All submissions in ``sources`` (folders or .zip files) for the given notebooks."""
    check_sources(sources)
    found = Collection()
    for n, source in enumerate(sources):
        source = Path(source)
        if source.is_dir():
            _collect_folder(source, source.name, notebooks, found)
        else:
            folder = _unzip(source, unpack_dir / f"{n}-{source.stem}")
            _collect_folder(folder, source.name, notebooks, found)
    _split_canvas_names(found)
    _keep_newest(found)
    return found


def _unzip(archive: Path, dest: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise GradingError(f"{archive} unpacks to more than {MAX_ZIP_BYTES >> 30} GB")
        for member in members:
            zf.extract(member, dest)  # extract() drops absolute paths and '..'
    return dest


def _collect_folder(root: Path, label: str, notebooks: list[str], found: Collection) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = path.relative_to(root).parts
        origin = f"{label}/{'/'.join(parts)}"
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            found.rejected.append(Rejected(origin, "ignored: hidden or system file"))
            continue
        if path.name == "timestamp.txt" and len(parts) >= 3 and parts[-2] in notebooks:
            continue  # nbgrader's submission time, read with its notebook
        result = attribute(parts, notebooks)
        if isinstance(result, Rejected):
            result.origin = origin
            found.rejected.append(result)
            continue
        result.path, result.origin = path, origin
        if len(parts) >= 3 and parts[-2] == result.notebook:
            stamp = path.parent / "timestamp.txt"
            result.timestamp = stamp.read_text().strip() if stamp.is_file() else None
        found.submissions.append(result)


def attribute(parts: tuple[str, ...], notebooks: list[str]) -> Submission | Rejected:
    """Whose file and which notebook, from its path relative to the submissions folder."""
    name = parts[-1]
    if not name.endswith(".ipynb"):
        return Rejected("", "not a notebook (.ipynb) file")
    stem = name[: -len(".ipynb")]
    if len(parts) >= 3 and parts[-2] == stem and stem in notebooks:  # nbgrader: student/NB/NB.ipynb
        student = student_from_folder(parts[-3])
        if student is None:
            return Rejected("", f"folder name {parts[-3]!r} is not a usable student id", None, stem)
        return Submission(student, stem, Path(), "")
    if len(parts) >= 2 and parts[-2] == stem:
        return Rejected(
            "",
            "the folder is named after the notebook, not a student: give the folder above it "
            "(nbgrader's layout is STUDENT/NOTEBOOK/NOTEBOOK.ipynb)",
            None,
            stem,
        )
    folder_student = student_from_folder(parts[-2]) if len(parts) >= 2 else None
    match = match_notebook(stem, notebooks)
    if match is None:
        close = (
            difflib.get_close_matches(stem, notebooks, n=1, cutoff=0.6)
            or [
                nb
                for nb in notebooks
                if difflib.SequenceMatcher(None, stem[-len(nb) :], nb).ratio() > 0.8
            ][:1]
        )
        hint = (
            f"; did you mean {close[0]}.ipynb?"
            if close
            else f" (course notebooks: {', '.join(notebooks)})"
        )
        return Rejected("", f"file name does not name a course notebook{hint}", folder_student)
    notebook, prefix, copy = match
    if folder_student:
        moodle = MOODLE.match(parts[-2])
        return Submission(
            folder_student,
            notebook,
            Path(),
            "",
            copy=copy,
            lms_id=moodle["pid"] if moodle else None,
            lms="moodle" if moodle else None,
        )
    if not prefix:
        return Rejected(
            "",
            "cannot tell whose file this is: put it in a folder named after the "
            "student or prefix the name with the student id",
            None,
            notebook,
        )
    student, lms_id = student_from_prefix(prefix)
    if student is None:
        return Rejected("", f"cannot read a student id from {prefix!r}", None, notebook)
    lms = "canvas" if lms_id else "moodle" if MOODLE.match(prefix) else None
    return Submission(
        student,
        notebook,
        Path(),
        "",
        copy=copy,
        lms_id=lms_id or (student if lms else None),
        lms=lms,
    )


def match_notebook(stem: str, notebooks: list[str]) -> tuple[str, str, int] | None:
    """(notebook, text before it, copy number) if ``stem`` ends with a notebook name."""
    for nb in sorted(notebooks, key=len, reverse=True):
        m = re.match(
            rf"^(?P<prefix>(?:.*{SEPARATOR})?){re.escape(nb)}(?:-(?P<c1>\d+)|\s*\((?P<c2>\d+)\))?$",
            stem,
        )
        if m:
            return nb, m["prefix"], int(m["c1"] or m["c2"] or 0)
    return None


def student_from_prefix(prefix: str) -> tuple[str | None, str | None]:
    """(student id, Canvas user id) from the part of a file name before the notebook."""
    if m := CANVAS.match(prefix):
        return m["name"].lower(), m["uid"]
    if m := MOODLE.match(prefix):
        return m["pid"], None
    student = safe_id(prefix.rstrip("_- "))
    return student, None


def student_from_folder(folder: str) -> str | None:
    if m := MOODLE.match(folder):
        return m["pid"]
    return safe_id(folder)


def safe_id(text: str) -> str | None:
    """A student id usable as a folder name: spaces and odd characters become '_'."""
    slug = re.sub(r"[^A-Za-z0-9._@+-]+", "_", text.strip()).strip("._-")
    return slug if STUDENT_ID.match(slug) else None


def _split_canvas_names(found: Collection) -> None:
    """Two Canvas users with one name part: give both ``name_userid``."""
    uids: dict[str, set[str]] = {}
    canvas = [s for s in found.submissions if s.lms == "canvas"]
    for s in canvas:
        uids.setdefault(s.student, set()).add(s.lms_id)
    for s in canvas:
        if len(uids[s.student]) > 1:
            s.student = f"{s.student}_{s.lms_id}"


def _keep_newest(found: Collection) -> None:
    newest: dict[tuple[str, str], Submission] = {}
    for s in found.submissions:
        key = (s.student, s.notebook)
        if key not in newest or s.order() > newest[key].order():
            newest[key] = s
    for s in found.submissions:
        kept = newest[(s.student, s.notebook)]
        if kept is not s:
            found.rejected.append(
                Rejected(s.origin, f"superseded by the newer {kept.origin}", s.student, s.notebook)
            )
    found.submissions = sorted(newest.values(), key=lambda s: (s.notebook, s.student))
