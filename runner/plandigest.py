"""`plan --out PLAN.json` and `run --plan PLAN.json`: what a reviewer approved is what is sent.

A plan file is meant for git, so it holds no customer's data: the hashes of the campaign file
and its audience, how many requests the campaign renders, one digest of all of them, a short
salted digest per request (so that `run --plan` can say *which* rows differ without the file
saying anything about the people behind them), and the request template with the token
masked. The readable sample requests go to the plan's report and job summary instead.

`run --plan` renders the campaign again and compares the requests themselves, not only the
input hashes: an edited plan, or a campaign changed since, refuses (exit 2) saying what
differs. The digests cover every request the campaign renders, whatever the state says, so a
canary run (`--limit`) between the plan and the rest does not invalidate it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from runner import __version__, apis, pipeline
from runner.apis import Refusal
from runner.campaign import file_digest
from runner.errors import PlanMismatch, UsageError
from runner.model import Campaign, Endpoint
from runner.pipeline import Prepared
from runner.status import Status

FORMAT = "campaign-plan/2"
_ROW_DIGEST = 6  # bytes of each request's salted digest
_LISTED = 10  # rows named when a plan no longer matches


class Digest:
    """The digests of every request a campaign renders, in order."""

    def __init__(self, salt: bytes) -> None:
        self.salt = salt
        self.count = 0
        self._all = hashlib.sha256()
        self._rows = bytearray()

    def add(self, item: Prepared) -> bytes:
        """Take one request (as built for review); its short salted digest."""
        line = _line(item)
        self._all.update(line + b"\n")
        short = _short(line, self.salt)
        self._rows += short
        self.count += 1
        return short

    @property
    def requests_sha256(self) -> str:
        return self._all.hexdigest()

    @property
    def rows(self) -> str:
        return self._rows.hex()

    @property
    def shorts(self) -> bytes:
        """Every request's short digest, in order."""
        return bytes(self._rows)


def _split(shorts: bytes) -> Iterator[bytes]:
    return (shorts[i : i + _ROW_DIGEST] for i in range(0, len(shorts), _ROW_DIGEST))


def fingerprint(campaign: Campaign) -> dict[str, Any]:
    audience = campaign.audience.file
    return {
        "campaign": campaign.name,
        "campaign_sha256": file_digest(campaign.path),
        "audience_sha256": file_digest(audience) if audience and audience.is_file() else None,
    }


def template(campaign: Campaign, target: Endpoint) -> dict[str, Any]:
    """The request with each template in place of its values: what every request looks like,
    with no customer in it (the token is masked in ``target``)."""
    api = apis.module(campaign.bot.api)
    sources = [field.source for field in api.template_fields(campaign.message)]
    built = api.builder(campaign.message, target).build(sources)
    if isinstance(built, Refusal):
        return {"error": str(built)}
    return built.request.for_report()


def refuse_target(out: Path, campaign: Campaign) -> None:
    """`--out` never writes onto the campaign file or a file it reads."""
    reads = [campaign.path] + ([campaign.audience.file] if campaign.audience.file else [])
    target = out.resolve()
    for path in reads:
        if path.resolve() == target:
            raise UsageError(
                f"{out}: refusing to write the plan onto {path}, which the campaign reads; "
                "choose another file (e.g. campaigns/NAME.plan.json)"
            )


def write(
    out: Path, campaign: Campaign, limit: int | None, digest: Digest, shape: dict[str, Any]
) -> None:
    """Write the plan file atomically: a reviewer never sees half a plan."""
    content = {
        "format": FORMAT,
        "runner_version": __version__,
        **fingerprint(campaign),
        "limit": limit,
        "count": digest.count,
        "requests_sha256": digest.requests_sha256,
        "salt": digest.salt.hex(),
        "template": shape,
        "rows": digest.rows,
    }
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as file:
            file.write(
                orjson.dumps(content, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
            )
        os.replace(temporary, out)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the plan here: {exc.strerror}") from None


def verify(plan_path: Path, campaign: Campaign, items: Iterable[pipeline.Item]) -> None:
    """Raise `PlanMismatch` saying what changed since the plan was made; ``items`` is the
    campaign rendered now (`pipeline.prepare` with the masked endpoint the plan used)."""
    plan = _read(plan_path)
    if plan.get("limit") is not None:
        raise PlanMismatch(
            f"{plan_path}: the plan covers only the first {plan['limit']} rows; "
            "make the reviewed plan without --limit"
        )
    current = fingerprint(campaign)
    changed = []
    if plan.get("campaign") != current["campaign"]:
        changed.append(
            f"it is a plan of campaign {plan.get('campaign')!r}, not {current['campaign']!r}"
        )
    if plan.get("campaign_sha256") != current["campaign_sha256"]:
        changed.append(f"the campaign file {campaign.path} changed since the plan")
    if plan.get("audience_sha256") != current["audience_sha256"]:
        changed.append(f"the audience {campaign.audience.file} changed since the plan")
    try:
        salt = bytes.fromhex(str(plan.get("salt", "")))
        planned = bytes.fromhex(str(plan.get("rows", "")))
    except ValueError:
        raise PlanMismatch(
            f"{plan_path}: the plan's digests are damaged; make a new plan"
        ) from None
    digest = Digest(salt)
    rows = array("Q")  # the audience row of each request, in order; its digest is in `digest`
    for item in items:
        if isinstance(item, Prepared):
            digest.add(item)
            rows.append(item.row)
    if digest.count != plan.get("count") or digest.requests_sha256 != plan.get("requests_sha256"):
        changed.append(_which(planned, rows, digest.shorts, plan.get("count")))
    if changed:
        raise PlanMismatch(
            f"{plan_path} no longer matches: "
            + "; ".join(changed)
            + ". Make and review a new plan (campaign plan --out)."
        )


def _which(planned: bytes, rows: Sequence[int], shorts: bytes, count: Any) -> str:
    """Which rows render a request the plan does not hold."""
    reviewed = Counter(_split(planned))
    count_now = len(rows)
    differ = []
    for row, short in zip(rows, _split(shorts), strict=True):
        if reviewed[short] > 0:
            reviewed[short] -= 1
        else:
            differ.append(row)
    text = f"the rendered requests differ from the reviewed ones ({count} planned, {count_now} now"
    if differ:
        shown = ", ".join(str(r) for r in differ[:_LISTED]) + (
            ", ..." if len(differ) > _LISTED else ""
        )
        text += f"; {len(differ)} not in the plan: row{'s' if len(differ) > 1 else ''} {shown}"
    return text + ")"


def _read(plan_path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(plan_path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{plan_path}: plan file not found") from None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise UsageError(f"{plan_path}: not a readable plan: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{plan_path}: not a campaign plan (expected format {FORMAT})")
    return data


def _line(item: Prepared) -> bytes:
    request = item.reviewed or item.request
    return orjson.dumps(
        [
            item.recipient,
            request.method,
            request.url,
            request.body.decode() if request.body else None,
        ]
    )


def _short(line: bytes, salt: bytes) -> bytes:
    return hashlib.blake2b(line, key=salt, digest_size=_ROW_DIGEST).digest()


class Gate:
    """Lets through, while a run sends, only the requests the reviewed plan holds (each as
    many times as the plan does): a row edited or added after the plan was verified, even
    during the run, is refused, never sent."""

    REFUSED = "not in the reviewed plan (the audience or campaign changed after it was checked)"

    def __init__(self, plan_path: Path) -> None:
        plan = _read(plan_path)
        self._salt = bytes.fromhex(str(plan.get("salt", "")))
        self._left = Counter(_split(bytes.fromhex(str(plan.get("rows", "")))))
        self.refused = 0

    def check(self, items: Iterable[pipeline.Item]) -> Iterator[pipeline.Item]:
        for item in items:
            if isinstance(item, Prepared):
                short = _short(_line(item), self._salt)
                if self._left[short] <= 0:
                    self.refused += 1
                    yield pipeline.Skipped(item.row, self.REFUSED, item.recipient, Status.INVALID)
                    continue
                self._left[short] -= 1
            yield item


def new_digest() -> Digest:
    return Digest(secrets.token_bytes(16))
