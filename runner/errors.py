"""The one exception tree of the product.

Every problem a user can cause is a `CampaignError`; the CLI turns it into a message and an exit
code in one place. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a campaign file, printed as ``FILE:LINE:COL: [path: ]message``."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        label = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {label}{where}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class CampaignError(Exception):
    """Root of every error a user can cause; ``exit_code`` is what the command exits with."""

    exit_code = 2


class InvalidCampaign(CampaignError):
    """The campaign file breaks the schema or a semantic rule; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(CampaignError):
    """Arguments or environment that make the command impossible (missing secret, bad path)."""


class AudienceError(CampaignError):
    """The audience file is malformed as a whole (an unterminated quote, a duplicate column, a
    line past the limit, nesting past the limit): nothing is sent."""


class TooManyInvalid(CampaignError):
    """More rows cannot become a request than ``audience.max_invalid`` allows: nothing is
    sent, so that nobody is dropped without a decision."""


class PlanMismatch(CampaignError):
    """`run --plan` found that the campaign or its audience changed since the plan."""


class LockHeld(CampaignError):
    """Another process runs the same campaign against the same state file."""


class StateError(CampaignError):
    """The state cannot be used: unreachable, damaged, or of another schema. Nothing was sent."""


class RunAborted(CampaignError):
    """The run stopped itself: the token was rejected or too many failures in a row."""

    exit_code = 3


class StateLost(RunAborted):
    """The state stopped answering during a run: nothing more can be claimed, so nothing more
    is sent."""
