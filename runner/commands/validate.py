"""`campaign validate`: every problem in every file, no secrets and no network needed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.campaign import expand, problems_of
from runner.errors import Problem, UsageError


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
    return ValidateResult(
        tuple(FileReport(p, tuple(problems_of(p, outside_repo=outside_repo)[0])) for p in paths)
    )
