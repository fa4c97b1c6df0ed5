"""`plan --out PLAN.json` and `run --plan PLAN.json`: the reviewed plan is what runs.

The digest holds every rendered request (token masked) and the hashes of the campaign file and
its audience; `run --plan` refuses when either no longer matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from runner import __version__
from runner.campaign import file_digest
from runner.errors import PlanMismatch, UsageError
from runner.model import Campaign
from runner.pipeline import Prepared

FORMAT = "campaign-plan/1"


def fingerprint(campaign: Campaign) -> dict[str, Any]:
    audience = campaign.audience.file
    return {
        "campaign": campaign.name,
        "campaign_file": str(campaign.path),
        "campaign_sha256": file_digest(campaign.path),
        "audience_file": str(audience) if audience else None,
        "audience_sha256": file_digest(audience) if audience and audience.is_file() else None,
    }


class DigestWriter:
    """Streams the digest: the header, every request as it is rendered, then the totals."""

    def __init__(self, path: Path, campaign: Campaign, limit: int | None) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._out: BinaryIO = path.open("wb")
        except OSError as exc:
            raise UsageError(f"{path}: cannot write the plan here: {exc.strerror}") from None
        self._path = path
        header = {
            "format": FORMAT,
            "runner_version": __version__,
            **fingerprint(campaign),
            "limit": limit,
        }
        self._out.write(orjson.dumps(header)[:-1] + b',"requests":[\n')
        self._hash = hashlib.sha256()
        self._count = 0

    def add(self, item: Prepared) -> None:
        line = orjson.dumps(
            {"row": item.row, "recipient": item.recipient, "request": item.request.for_report()}
        )
        self._hash.update(line + b"\n")
        self._out.write((b",\n" if self._count else b"") + line)
        self._count += 1

    def discard(self) -> None:
        """Close and remove a digest that will not be finished."""
        self._out.close()
        self._path.unlink(missing_ok=True)

    def close(self) -> None:
        trailer = {"count": self._count, "requests_sha256": self._hash.hexdigest()}
        self._out.write(b"\n]," + orjson.dumps(trailer)[1:] + b"\n")
        self._out.close()


def verify(plan_path: Path, campaign: Campaign) -> None:
    """Raise `PlanMismatch` saying what changed since the plan was made."""
    header = _read_header(plan_path)
    if header.get("format") != FORMAT:
        raise UsageError(f"{plan_path}: not a campaign plan (expected format {FORMAT})")
    if header.get("limit") is not None:
        raise PlanMismatch(
            f"{plan_path}: the plan covers only the first {header['limit']} rows; "
            "make the reviewed plan without --limit"
        )
    current = fingerprint(campaign)
    changed = []
    if header.get("campaign") != current["campaign"]:
        changed.append(
            f"it is a plan of campaign {header.get('campaign')!r}, not {current['campaign']!r}"
        )
    if header.get("campaign_sha256") != current["campaign_sha256"]:
        changed.append(f"the campaign file {campaign.path} changed since the plan")
    if header.get("audience_sha256") != current["audience_sha256"]:
        changed.append(f"the audience {current['audience_file']} changed since the plan")
    if changed:
        raise PlanMismatch(
            f"{plan_path} no longer matches: "
            + "; ".join(changed)
            + ". Make and review a new plan (campaign plan --out)."
        )


def _read_header(plan_path: Path) -> dict[str, Any]:
    import ijson

    header: dict[str, Any] = {}
    try:
        with plan_path.open("rb") as handle:
            for prefix, event, value in ijson.parse(handle):
                if prefix == "requests":
                    break
                if (
                    event in ("string", "number", "null", "boolean")
                    and "." not in prefix
                    and prefix
                ):
                    header[prefix] = value
    except FileNotFoundError:
        raise UsageError(f"{plan_path}: plan file not found") from None
    except ijson.JSONError as exc:
        raise UsageError(f"{plan_path}: not a readable plan: {exc}") from None
    return header
