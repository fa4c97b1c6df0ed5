"""The flow of one recipient up to the wire: audience row -> render -> request or skip.

`plan` stops here and writes what it got; `run` feeds the same stream to the engine, so the
preview cannot drift from the broadcast.
"""

from __future__ import annotations

import collections
import difflib
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from runner import apis, audience, secrets
from runner import schedule as schedules
from runner.apis import Refusal, Request, recipient_key
from runner.dedupe import SeenIndex
from runner.errors import TooManyInvalid, UsageError
from runner.model import (
    DEFAULT_HOSTS,
    Campaign,
    Endpoint,
    Field,
    V2Message,
    api_base,
    base_url_problem,
)
from runner.render import FILTERED, Renderer, Skip, is_template
from runner.report import line
from runner.state.store import Prior
from runner.status import Status
from runner.tally import Line


class Prepared(NamedTuple):
    row: int
    recipient: str
    request: Request
    record: dict[str, Any]  # the audience record, for undelivered.csv
    # The same row built for a reviewed plan's digests (`prepare(..., reviewed=)`): every
    # ${VAR} as written and the token masked, so that a plan needs no secret.
    reviewed: Request | None = None
    identifiers: tuple[tuple[str, str], ...] = ()  # V2: (field, value) (`apis.Built`)


class Skipped(NamedTuple):
    row: int
    reason: str
    recipient: str | None = None
    status: Status = Status.SKIPPED  # or INVALID: the row cannot become a request
    opens: float | None = None  # DEFERRED: when the recipient's quiet hours end (epoch seconds)
    identifiers: tuple[tuple[str, str], ...] = ()  # V2: (field, value) (`apis.Built`)


Item = Prepared | Skipped
_tuple = tuple.__new__


class Priors(Protocol):
    """Whatever can say what earlier runs left of a recipient (a state's priors, a run)."""

    #: V2: each order of identifiers earlier runs keyed recipients by (`recipient_key`)
    schemes: tuple[tuple[str, ...], ...]

    def prior(self, recipient: str) -> Prior | None: ...


# When a recipient was known by two keys, the record that forbids most wins: delivered, then
# maybe delivered, then failed, then not sent.
_WEIGHT = {Status.SENT: 4, Status.UNCERTAIN: 3, Status.SENDING: 3, Status.FAILED: 2}


def key_scheme(campaign: Campaign) -> list[str] | None:
    """The order of identifiers a V2 campaign's recipients are keyed by (None for V1 and
    Chatfuel, whose recipient has one id)."""
    if isinstance(campaign.message, V2Message):
        from runner.apis import v2

        return v2.recipient_key_scheme(campaign.message)
    return None


def prior_of(item: Item, priors: Priors) -> Prior | None:
    """What earlier runs left of the item's recipient: by its key, and, for a V2 recipient
    earlier runs knew in another order of identifiers (`priority:` reordered, an identifier
    added), by the key each of those orders gives; the record that forbids most wins."""
    if item.recipient is None:
        return None
    found = priors.prior(item.recipient)
    if not item.identifiers or not priors.schemes:
        return found
    values = dict(item.identifiers)
    keys = {item.recipient}
    for scheme in priors.schemes:
        key = next((values[k] for k in scheme if values.get(k)), None)
        if key is None or key in keys:
            continue
        keys.add(key)
        other = priors.prior(key)
        if other is not None and (
            found is None or _WEIGHT.get(other.status, 1) > _WEIGHT.get(found.status, 1)
        ):
            found = other
    return found


def earlier(
    item: Item, priors: Priors, *, retry_failed: bool, resend_uncertain: bool
) -> Line | None:
    """The report line of a recipient an earlier run settled, or None when it is to be sent.

    One rule for `plan`, `run` and `status`: delivered ones are skipped; failed and uncertain
    ones are reported as such unless the run is asked to send them again; unsent ones are
    sent. A recipient in quiet hours now is judged by it too: one an earlier run settled is
    not deferred (else a campaign whose audience spans zones would never be done)."""
    prior = prior_of(item, priors)
    if prior is None or item.recipient is None:
        return None
    if prior.status == Status.SENT:
        return line(item.row, item.recipient, Status.SKIPPED, reason="already sent")
    if prior.status == Status.FAILED and not retry_failed:
        reason = "failed in an earlier run; not retried (use --retry-failed)"
    elif prior.status == Status.UNCERTAIN and not resend_uncertain:
        reason = "uncertain since an earlier run; not resent (use --resend-uncertain)"
    else:
        return None
    return line(
        item.row,
        item.recipient,
        prior.status,
        reason=reason,
        http_status=prior.http_status,
        result=prior.result,
        error=prior.error,
    )


def endpoint(
    campaign: Campaign,
    *,
    strict: bool,
    token: str | None = None,
    base_url: str | None = None,
    as_written: bool = False,
) -> Endpoint:
    """The campaign's endpoint. ``strict`` resolves every ``${VAR}`` or raises `UsageError`;
    otherwise unset ones stay as written (previews need no secrets); ``as_written`` resolves
    none (a plan's digests: the same with or without the secrets). ``token``/``base_url``
    override the file (the masked preview, the sandbox)."""
    bot = campaign.bot

    def value(text: str, key: str) -> str:
        if as_written:
            return text
        where = campaign.where(f"bot.{key}")
        return secrets.resolve(text, where) if strict else secrets.resolve_lenient(text)

    if base_url is None:
        given = value(bot.base_url, "base_url") if bot.base_url else DEFAULT_HOSTS[bot.api]
        problem = base_url_problem(given) if strict and not as_written else None
        if problem:
            raise UsageError(f"{campaign.where('bot.base_url')}: {given!r}: {problem}")
        base_url = api_base(given, bot.api)
    return Endpoint(
        base_url=base_url,
        bot_id=value(bot.id, "id"),
        token=token if token is not None else value(bot.token, "token"),
    )


def render_context(campaign: Campaign) -> dict[str, object]:
    return {
        "vars": dict(campaign.vars),
        "campaign": {"name": campaign.name, "description": campaign.description},
    }


def reviewed_endpoint(campaign: Campaign) -> Endpoint:
    """What a plan's digests are made with: every ``${VAR}`` as written, the token masked."""
    return endpoint(campaign, strict=False, token=secrets.MASK, as_written=True)


def prepare(
    campaign: Campaign, target: Endpoint, *, reviewed: Endpoint | None = None
) -> Iterator[Item]:
    """Every audience row, in order, as a request to send or a reason to skip it; with
    ``reviewed``, each request is also built for that endpoint from the same rendered row."""
    module = apis.module(campaign.bot.api)
    fields = module.template_fields(campaign.message)
    schedule = campaign.schedule
    quiet = schedule.quiet_start is not None and schedule.timezone is not None
    zone_template = quiet and is_template(schedule.timezone or "")
    if zone_template:  # rendered with the message, then taken off its values
        fields = [*fields, Field(("schedule", "timezone"), schedule.timezone or "")]
    renderer = Renderer(fields, campaign.audience.where, render_context(campaign))
    builder = module.builder(campaign.message, target)
    second = module.builder(campaign.message, reviewed) if reviewed is not None else None
    seen = SeenIndex.for_about(audience.rows_hint(campaign.audience))
    render, build, first_row = renderer.render, builder.build, seen.first_row
    fixed_zone = schedule.timezone or ""
    for n, record, error in audience.rows(campaign.audience):
        if record is None:
            yield Skipped(n, error or "unreadable", None, Status.INVALID)
            continue
        values = render(record)
        if isinstance(values, Skip):
            if values is FILTERED:
                yield _tuple(Skipped, (n, values, None, Status.SKIPPED, None, ()))  # 1 in 10
            else:
                yield Skipped(n, values, None, Status.INVALID)
            continue
        zone = fixed_zone
        if zone_template:
            zone = values[-1].strip()
            values = values[:-1]
        built = build(values)
        if isinstance(built, Refusal):
            yield Skipped(n, built, None, Status.INVALID)
            continue
        recipient, request, identifiers = built
        earlier = first_row(recipient, n)
        if earlier is not None:
            yield Skipped(n, f"duplicate of row {earlier}", recipient)
            continue
        if quiet:
            try:
                opens = schedule.quiet_until(zone, schedules.now())
            except ValueError as exc:
                yield Skipped(n, f"{exc} in schedule.timezone", recipient, Status.INVALID)
                continue
            if opens is not None:
                reason = f"quiet hours in {zone} until {opens:%H:%M} local"
                opened = opens.timestamp()
                yield Skipped(n, reason, recipient, Status.DEFERRED, opened, identifiers)
                continue
        if second is not None:
            again = second.build(values)
            checked = None if isinstance(again, Refusal) else again[1]
            yield Prepared(n, recipient, request, record, checked, identifiers)
            continue
        yield _tuple(Prepared, (n, recipient, request, record, None, identifiers))  # C: audience


def _distance(a: str, b: str, most: int) -> int:
    """Edit distance (insertions, deletions, substitutions), or ``most + 1`` once over it."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        if min(current) > most:
            return most + 1
        previous = current
    return previous[-1]


def closest(given: str, keys: Sequence[str], n: int = 3) -> list[str]:
    """The keys nearest ``given`` by edit distance on the whole key (a digit dropped from a
    long id is one edit), nearest first; close ones only."""
    most = max(2, len(given) // 4)
    ranked = sorted((d, key) for key in set(keys) if (d := _distance(given, key, most)) <= most)
    found = [key for _, key in ranked[:n]]
    return found or difflib.get_close_matches(given, list(keys), n=n, cutoff=0.5)


FIRST_INVALID = 10  # invalid rows listed when a run refuses
_SUGGESTED_FROM = 100_000  # recipient keys kept to suggest the closest to an unknown --to ID


def select(campaign: Campaign, target: Endpoint, wanted: Sequence[str]) -> list[Prepared]:
    """The requests to the audience members ``wanted`` (recipient keys, compared as the state
    compares them), for a test send; `UsageError` naming the closest keys when one is not in
    the audience."""
    keys = {recipient_key(w): w for w in wanted}
    found: dict[str, Prepared] = {}
    seen: list[str] = []
    for item in prepare(campaign, target):
        if isinstance(item, Prepared):
            if item.recipient in keys and item.recipient not in found:
                found[item.recipient] = item
            elif len(seen) < _SUGGESTED_FROM:
                seen.append(item.recipient)
    missing = [given for key, given in keys.items() if key not in found]
    if missing:
        lines = []
        for given in missing:
            close = closest(recipient_key(given), seen)
            hint = f"; closest: {', '.join(close)}" if close else ""
            lines.append(
                f"{campaign.path}: --to {given}: no row of the audience renders this recipient "
                f"(or it is filtered, invalid or a duplicate){hint}"
            )
        raise UsageError("\n".join([*lines, "nothing was sent"]))
    return list(found.values())


def invalid_allowed(max_invalid: int | str, rows: int) -> int:
    """How many invalid rows ``audience.max_invalid`` allows out of ``rows``."""
    if isinstance(max_invalid, str):
        return math.floor(rows * float(max_invalid.rstrip("%")) / 100)
    return max_invalid


def too_many_invalid(campaign: Campaign, rows: int, count: int) -> str:
    limit = campaign.audience.max_invalid
    return f"{count} of {rows} rows are invalid, more than audience.max_invalid allows ({limit})"


def refuse_invalid(
    campaign: Campaign, rows: int, invalid: list[tuple[int, str]], count: int
) -> str | None:
    """Why a run must refuse to start, with the first invalid rows and how to allow them;
    None when the invalid rows are within ``audience.max_invalid``."""
    limit = campaign.audience.max_invalid
    if count <= invalid_allowed(limit, rows):
        return None
    lines = [f"{campaign.path}: {too_many_invalid(campaign, rows, count)}; nothing was sent:"]
    lines += [f"  row {row}: {reason}" for row, reason in invalid[:FIRST_INVALID]]
    if count > FIRST_INVALID:
        lines.append(f"  ... and {count - FIRST_INVALID} more (campaign plan lists them all)")
    share = math.ceil(count * 1000 / max(rows, 1)) / 10
    lines.append(
        "Fix the rows or the templates, or accept skipping them: set audience.max_invalid: "
        f'{count} (or "{share:g}%") in the campaign'
    )
    return "\n".join(lines)


class InvalidRows:
    """Counts the invalid rows of a rendered audience as it passes by, so that the check
    before a run can share its pass with another (`run --plan` verifying the plan)."""

    def __init__(self, campaign: Campaign) -> None:
        self._campaign = campaign
        self._rows = 0
        self._count = 0
        self.prepared = 0  #: rows that became a request
        self._first: list[tuple[int, str]] = []

    def count(self, items: Iterable[Item]) -> Iterator[Item]:
        for item in items:
            self._rows += 1
            if type(item) is Prepared:
                self.prepared += 1
            elif type(item) is Skipped and item.status is Status.INVALID:
                self._count += 1
                if len(self._first) < FIRST_INVALID:
                    self._first.append((item.row, item.reason))
            yield item

    @property
    def invalid(self) -> int:
        """Invalid rows counted so far."""
        return self._count

    def too_many(self) -> str | None:
        """Why a run must refuse, in one line without the file's name; None when it would
        not."""
        if self._count <= invalid_allowed(self._campaign.audience.max_invalid, self._rows):
            return None
        return too_many_invalid(self._campaign, self._rows, self._count)

    def refusal(self) -> str | None:
        """Why a run must refuse (`refuse_invalid`), once the audience has passed."""
        return refuse_invalid(self._campaign, self._rows, self._first, self._count)


def check_invalid(
    campaign: Campaign, target: Endpoint, counted: InvalidRows | None = None
) -> InvalidRows:
    """Raise `TooManyInvalid` before anything is locked or sent when the audience has more
    invalid rows than the campaign allows. Reads and renders it whole, unless a pass already
    made ``counted`` them; the counts."""
    if counted is None:
        counted = InvalidRows(campaign)
        collections.deque(counted.count(prepare(campaign, target)), maxlen=0)
    refusal = counted.refusal()
    if refusal:
        raise TooManyInvalid(refusal)
    return counted
