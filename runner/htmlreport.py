"""report.html: the report for people, one self-contained file (inline CSS and SVG; no
script, no font, nothing fetched), readable on a phone and offline from a CI artifact.

Built with Jinja (autoescaped: a customer named ``<script>`` is text) and SVG drawn here; the
timeline is the engine's per-second counts, so a million-request run's page stays small.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from runner import inert, repository
from runner.apis import decoded
from runner.campaign import file_digest
from runner.model import Campaign
from runner.secrets import MASK
from runner.tally import Summary, Tally, by_reason, facts

COLORS = {
    "sent": "#2e8b57",
    "failed": "#c0392b",
    "retry": "#f0a020",
    "uncertain": "#8e44ad",
    "campaign": "#7f8c8d",
}
_NAMES = {"retry": "429 / 503 / refused", "campaign": "campaign-wide error"}
_BUCKETS = 360  # bars of the timeline at most
_WIDTH, _HEIGHT, _PAD = 720, 220, 34


@cache
def _template() -> jinja2.Template:
    source = resources.files("runner").joinpath("templates/report.html.j2").read_text("utf-8")
    # Text from the API or the audience reaches the page with no control or bidi character
    # (U+202E would reverse what a reader sees), then escaped.
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, finalize=_without_controls
    )
    return env.from_string(source)


def identity(campaign: Campaign) -> Summary:
    """Who and what a report is about: the campaign file and its digest, the git commit, who
    ran it, and the bot (its id masked when it came from the environment)."""
    root = repository.root(campaign.path)
    commit = None
    file_state = None
    if (root / ".git").exists():
        try:
            done = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            commit = (done.stdout.strip() or None) if done.returncode == 0 else None
            changed = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--", str(campaign.path)],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout
            if changed.startswith("??"):
                file_state = "not committed in git (untracked)"
            elif changed.strip():
                file_state = "changed since the last commit (uncommitted changes)"
        except (OSError, subprocess.SubprocessError):
            commit = None
    try:
        user = " ".join(inert.terminal(os.environ.get("GITHUB_ACTOR") or getpass.getuser()).split())
    except (KeyError, OSError):  # no user name on this machine
        user = None
    return {
        "bot": MASK if "${" in campaign.bot.id else campaign.bot.id,
        "campaign_file": str(campaign.path),
        "campaign_sha256": file_digest(campaign.path),
        "git_commit": commit,
        "campaign_file_state": file_state,
        "run_by": user,
    }


def _without_controls(value: Any) -> Any:
    if isinstance(value, str) and not isinstance(value, Markup):
        return inert.visible(value)
    return value


def render(summary: Summary, tally: Tally, title: str) -> str:
    mode = summary.get("mode", "run")
    label = {"run": "REAL SEND", "sandbox": "SANDBOX", "test": "TEST", "plan": "PLAN"}
    counts = [(name, n) for name, n in summary["counts"].items() if n or name in ("sent",)]
    if summary.get("not_reached"):  # as prominent as the counts: they were not sent
        counts.append(("not reached", summary["not_reached"]))
    return _template().render(
        title=title,
        s=_Obj(summary),
        mode_class="real" if mode == "run" else "sandbox" if summary.get("sandbox") else mode,
        mode_label=("SANDBOX " if mode == "test" and summary.get("sandbox") else "")
        + label.get(mode, str(mode).upper()),
        counts=counts,
        facts="; ".join([f"{summary['rows']} rows", *facts(summary)]),
        timeline=Markup(_timeline(tally, summary)) if tally.timeline else "",
        legend=[(_NAMES.get(k, k), COLORS.get(k, "#999")) for k in COLORS if k in tally.timeline],
        adapted=bool(summary.get("rate_lowest")),
        latency=Markup(_latency(tally)) if tally.latencies else "",
        http=list(summary.get("http_status", {}).items()),
        errors=[_Obj(e) for e in summary.get("errors") or []],
        reason_tables=[
            (f"{status.capitalize()} rows, by reason", list(reasons.items()))
            for status in ("invalid", "deferred", "skipped")
            if (reasons := by_reason(summary)[status])
        ],
        samples=[
            _Obj({"row": s["row"], "fields": decoded(s["request"])})
            for s in summary.get("samples") or []
        ],
        has_undelivered=bool(summary.get("undelivered")),
    )


class _Obj:
    """A mapping read as attributes by the template (missing keys are empty)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        return self._data.get(name)


def _timeline(tally: Tally, summary: Mapping[str, Any]) -> str:
    """Requests per second, stacked by outcome, with the limit and the adapted rate."""
    seconds = tally.seconds
    _, by_kind = tally.bars(_BUCKETS)
    bars = len(by_kind)
    # Stacked in the legend's order, from the bottom.
    stacks = [[(kind, bar[kind]) for kind in COLORS if kind in bar] for bar in by_kind]
    limit = float(summary.get("rate_limit") or 0)
    rates = [r for r in tally.rates if r]
    top = max([limit, *(sum(v for _, v in s) for s in stacks), *rates, 1.0]) * 1.1
    inner_w, inner_h = _WIDTH - _PAD - 8, _HEIGHT - 2 * _PAD + 10
    bar_w = inner_w / bars

    def y(value: float) -> float:
        return _PAD - 10 + inner_h * (1 - value / top)

    parts = [_svg_open(), _axes(top, inner_h, f"seconds of the run ({seconds} in all)")]
    ticks = (
        ("0 s", f"{seconds // 2} s", f"{seconds} s")
        if seconds >= 4
        else ("0 s", "", f"{seconds} s")
    )
    parts.append(_x_ticks(inner_h, ticks))
    for b, stack in enumerate(stacks):
        base = 0.0
        for kind, value in stack:
            parts.append(
                f'<rect x="{_PAD + b * bar_w:.1f}" y="{y(base + value):.1f}" '
                f'width="{max(bar_w - 0.3, 0.4):.1f}" height="{y(base) - y(base + value):.1f}" '
                f'fill="{COLORS[kind]}"/>'
            )
            base += value
    if limit:
        parts.append(
            f'<line x1="{_PAD}" x2="{_PAD + inner_w}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
            'stroke="#1d2330" stroke-dasharray="4 3"/>'
        )
    if summary.get("rate_lowest") and rates:
        step = inner_w / max(len(tally.rates), 1)
        points = " ".join(
            f"{_PAD + (i + 0.5) * step:.1f},{y(r):.1f}" for i, r in enumerate(tally.rates) if r
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="#d97706" stroke-width="2"/>')
    parts.append("</svg>")
    return "".join(parts)


def _latency(tally: Tally) -> str:
    """The latency distribution, with p50, p95 and p99 marked."""
    ordered = sorted(tally.latencies)
    marks = {q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.95, 0.99)}
    high = max(marks[0.99] * 1.25, 1.0)
    bins = 40
    counts = [0] * bins
    for value in ordered:
        counts[min(bins - 1, int(value / high * bins))] += 1
    top = max(counts) * 1.1 or 1
    inner_w, inner_h = _WIDTH - _PAD - 8, _HEIGHT - 2 * _PAD + 10
    w = inner_w / bins
    parts = [_svg_open(), _axes(top, inner_h, f"milliseconds (0 to {high:.0f})")]
    for i, n in enumerate(counts):
        h = inner_h * n / top
        parts.append(
            f'<rect x="{_PAD + i * w:.1f}" y="{_PAD - 10 + inner_h - h:.1f}" '
            f'width="{w - 1:.1f}" height="{h:.1f}" fill="#5b7bd5"/>'
        )
    for q, value in marks.items():
        x = _PAD + inner_w * min(value / high, 1)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_PAD - 10}" y2="{_PAD - 10 + inner_h}" '
            'stroke="#b3261e" stroke-dasharray="3 2"/>'
            # Each label on a line of its own, on the side of its line with room.
            f'<text x="{x + 3 if x < _WIDTH / 2 else x - 3:.1f}" '
            f'y="{_PAD - 14 + 13 * (1 + [0.5, 0.95, 0.99].index(q))}" '
            f'text-anchor="{"start" if x < _WIDTH / 2 else "end"}" '
            f'font-size="11" fill="#b3261e">p{int(q * 100)} {value:.0f} ms</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_open() -> str:
    return f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" font-family="system-ui, sans-serif">'


def _x_ticks(inner_h: float, labels: Sequence[str]) -> str:
    """Labels along the horizontal axis: its start, middle and end."""
    floor = _PAD - 10 + inner_h
    inner_w = _WIDTH - _PAD - 8
    anchors = ("start", "middle", "end")
    return "".join(
        f'<text x="{_PAD + inner_w * i / 2:.1f}" y="{floor + 13:.1f}" '
        f'text-anchor="{anchors[i]}" font-size="11" fill="#5b6475">{label}</text>'
        for i, label in enumerate(labels)
    )


def _axes(top: float, inner_h: float, label: str) -> str:
    ticks: Sequence[float] = (0, top / 1.1 / 2, top / 1.1)
    floor = _PAD - 10 + inner_h
    parts = [
        f'<line x1="{_PAD}" x2="{_PAD}" y1="{_PAD - 10}" y2="{floor}" stroke="#8a94a6"/>',
        f'<line x1="{_PAD}" x2="{_WIDTH - 8}" y1="{floor}" y2="{floor}" stroke="#8a94a6"/>',
        f'<text x="{_WIDTH - 8}" y="{_HEIGHT - 6}" text-anchor="end" font-size="11" '
        f'fill="#5b6475">{label}</text>',
    ]
    for value in ticks:
        y = _PAD - 10 + inner_h * (1 - value / top)
        shown = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
        parts.append(
            f'<text x="{_PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#5b6475">{shown}</text>'
        )
    return "".join(parts)
