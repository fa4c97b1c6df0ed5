"""`campaign validate`: every problem in every file, no secrets and no network needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.campaign import expand, problems_of
from runner.errors import Problem, UsageError
from runner.yamlsource import Document


@dataclass(frozen=True)
class FileReport:
    path: Path
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


@dataclass(frozen=True)
class ValidateResult:
    files: tuple[FileReport, ...]

    @property
    def exit_code(self) -> int:
        return 0 if all(f.ok for f in self.files) else 2

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.exit_code == 0,
            "files": [
                {"file": str(f.path), "valid": f.ok, "problems": [p.as_dict() for p in f.problems]}
                for f in self.files
            ],
        }

    def text(self) -> str:
        lines = [str(p) for f in self.files for p in f.problems]
        bad = sum(not f.ok for f in self.files)
        n = len(self.files)
        noun = "file" if n == 1 else "files"
        if bad:
            lines.append(f"{bad} of {n} campaign {noun} invalid")
        else:
            lines.append(f"{n} campaign {noun} valid")
        return "\n".join(lines)


def validate(targets: list[str], *, outside_repo: bool = False) -> ValidateResult:
    paths = expand(targets)
    if not paths:
        raise UsageError("no campaign files found in " + ", ".join(targets))
    found = [(p, *problems_of(p, outside_repo=outside_repo)) for p in paths]
    named = [(path, problems, doc, _name(doc)) for path, problems, doc in found]
    # Two files of one name share one state, and `run` refuses them: said here, where a
    # pre-commit hook or a pull request's check sees it first (of each file that is valid
    # besides).
    valid = {path: name for path, found, _, name in named if FileReport(path, tuple(found)).ok}
    reports = []
    for path, problems, doc, name in named:
        others = [str(o) for o, n in valid.items() if name and n == name and o != path]
        if others and doc is not None:
            mark = doc.value_mark(("name",))
            problems = [
                *problems,
                Problem(
                    str(path),
                    mark.line,
                    mark.column,
                    "name",
                    f"{name!r} is the name of {', '.join(others)} too: the two would share one "
                    "state, and a run refuses them together; give each campaign its own name",
                ),
            ]
        reports.append(FileReport(path, tuple(problems)))
    return ValidateResult(tuple(reports))


def _name(doc: Document | None) -> str | None:
    name = doc.data.get("name") if doc is not None and isinstance(doc.data, dict) else None
    return name if isinstance(name, str) else None
