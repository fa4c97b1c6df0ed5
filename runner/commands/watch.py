"""`campaign run --watch`: a worker. It runs what is due, sleeps until the next thing is due,
and looks again, until SIGTERM or SIGINT; each look is a `run --due` pass
(`runner.commands.run`), and what the worker keeps between looks is `Looks`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime

from runner import lifecycle, pipeline, schedule, secrets
from runner.commands.broadcast import say
from runner.commands.run import RunOptions, RunResult, run
from runner.errors import CampaignError, TooManyInvalid
from runner.model import Campaign, Endpoint
from runner.secrets import Masker


def watch(
    targets: list[str], options: RunOptions, on_pass: Callable[[RunResult], None]
) -> RunResult:
    """A worker: run what is due, sleep until the next thing is due (at most ``every``),
    re-read the targets, until SIGTERM or SIGINT (which drain the run under way)."""
    once = dataclasses.replace(options, watch=False, due=True, wait=False)
    masker = Masker(secrets.resolved_values())
    looks = Looks(say)
    while True:
        try:
            result = run(targets, once, looks=looks)
        except CampaignError as exc:  # a broken file must not stop the worker
            looks.say(masker(str(exc)))
            result = RunResult([], exc.exit_code, options.sandbox)
        on_pass(result)
        if result.exit_code == 130:
            return result
        pause = options.every
        if result.next_due is not None:
            pause = min(pause, max(1.0, result.next_due - time.time()))
        held = looks.turn()
        if not options.quiet:
            at = datetime.fromtimestamp(time.time() + pause, UTC).strftime("%H:%M:%S UTC")
            kept = f" ({held} passed over as at the last look, not said again)" if held else ""
            say(f"watch: next look at {at}{kept}; SIGTERM or Ctrl-C stops the worker")
        schedule.sleep(pause)


class Looks:
    """What a worker keeps from one look to the next.

    Each line is said once while it stays the same from one look to the next: a campaign
    that cannot run (or waits, or is done) would otherwise fill the worker's log with the same
    lines at every look; a line is said again once something changed in between. And a
    campaign refused for its invalid rows is not rendered again while its file and audience
    are the same (a million rows cost seconds of CPU at every look, to refuse them again)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._before: set[str] = set()
        self._now: set[str] = set()
        self._held = 0
        self._refused: dict[str, tuple[tuple[Campaign, str | None], str]] = {}

    def say(self, line: str) -> None:
        self._now.add(line)
        if line in self._before:
            self._held += 1
        else:
            self._say(line)

    def turn(self) -> int:
        """End a look: how many of its lines were held back as said before."""
        held = self._held
        self._before, self._now, self._held = self._now, set(), 0
        return held

    def check_invalid(self, c: Campaign, target: Endpoint) -> pipeline.InvalidRows:
        """`pipeline.check_invalid`, remembering a refusal by the digests of the inputs."""
        # The campaign as loaded (not its file read again: an edit landing between the load
        # and that read kept a fixed campaign refused for good), and its audience's digest
        # taken before the check (an audience changed meanwhile is checked again next time).
        inputs = (c, lifecycle.digests(c)["audience_sha256"])
        before = self._refused.get(c.name)
        if before is not None and before[0] == inputs:
            raise TooManyInvalid(before[1])
        self._refused.pop(c.name, None)
        try:
            return pipeline.check_invalid(c, target)
        except TooManyInvalid as exc:
            self._refused[c.name] = (inputs, str(exc))
            raise
