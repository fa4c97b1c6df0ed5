"""Every schema rule and semantic check: the exact message, at the exact line."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import campaign as campaigns
from runner.errors import InvalidCampaign
from runner.model import V1Message, V2Message

GOOD_V1 = """\
version: 1
name: spring-sale
bot:
  api: v1
  id: "6123abcd"
  token: ${SMAX_BOT_TOKEN}
audience:
  file: customers.csv
  where: customer.opted_in == "yes"
message:
  user_id: "{{ customer.id }}"
  block_name: Spring Sale
  messaging_tag: CONFIRMED_EVENT_UPDATE
  attributes:
    greeting: "Hi {{ customer.first_name | default('there') }}"
vars:
  season: spring
"""

GOOD_V2 = """\
version: 1
name: v2-notice
bot:
  api: v2
  id: "1"
  token: ${SMAX_BOT_TOKEN}
audience:
  customers: [{id: "1"}]
message:
  customer:
    id: "{{ customer.id }}"
  messages:
    - text: "Hello"
"""


@pytest.fixture
def check(tmp_path: Path) -> Callable[[str], list[str]]:
    """Validate a campaign text; return every problem as printed."""
    (tmp_path / "customers.csv").write_text("id,first_name,opted_in\n1,An,yes\n")

    def _check(text: str) -> list[str]:
        path = tmp_path / "c.yaml"
        path.write_text(textwrap.dedent(text))
        problems, _ = campaigns.problems_of(path)
        return [str(p).replace(str(tmp_path) + "/", "") for p in problems]

    return _check


def test_the_shipped_schema_is_a_valid_json_schema() -> None:
    """Checked here, not at every start of a command."""
    import json

    import jsonschema

    from runner.schema import schema_text

    jsonschema.Draft202012Validator.check_schema(json.loads(schema_text()))


def test_the_good_campaigns_are_valid(check: Callable[[str], list[str]]) -> None:
    assert check(GOOD_V1) == []
    assert check(GOOD_V2) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("version: 1", "version: 2", "c.yaml:1:10: version: expected 1, got 2"),
        (
            "name: spring-sale",
            "name: Spring Sale",
            "c.yaml:2:7: name: expected a slug: lowercase letters, digits, '-' and '_', at most 100 "
            "(e.g. spring-sale-2026); got 'Spring Sale'",
        ),
        (
            "message:",
            "mesage:",
            "c.yaml:1:1: missing required key 'message'\n"
            "c.yaml:10:1: mesage: unknown key 'mesage'; did you mean 'message'? (expected one of: "
            "audience, bot, delivery, description, message, name, schedule, vars, version)",
        ),
        (
            "  api: v1",
            "  api: v3",
            "c.yaml:4:8: bot.api: expected one of: v1, v2, chatfuel; got 'v3'",
        ),
        (
            '  id: "6123abcd"',
            "  id: [1]",
            "c.yaml:5:7: bot.id: expected a string or an integer, got a list",
        ),
        ("  token: ${SMAX_BOT_TOKEN}", "  token: ''", "c.yaml:6:10: bot.token: must not be empty"),
        (
            "  file: customers.csv",
            "  file: customers.csv\n  rows: 3",
            "c.yaml:9:3: audience.rows: unknown key 'rows' (expected one of: customers, delimiter, "
            "file, format, max_invalid, where)",
        ),
        (
            "  messaging_tag: CONFIRMED_EVENT_UPDATE",
            "  messaging_tag: PROMO",
            "c.yaml:13:18: message.messaging_tag: expected one of: CONFIRMED_EVENT_UPDATE, "
            "POST_PURCHASE_UPDATE, ACCOUNT_UPDATE; got 'PROMO'",
        ),
        (
            '  user_id: "{{ customer.id }}"\n',
            "",
            "c.yaml:10:1: message: missing required key 'user_id'",
        ),
        (
            "vars:\n  season: spring",
            "vars: [1]",
            "c.yaml:16:7: vars: expected a mapping, got a list",
        ),
        (
            "vars:",
            "delivery: {concurrency: 0}\nvars:",
            "c.yaml:16:25: delivery.concurrency: expected a number >= 1, got 0",
        ),
        (
            "vars:",
            "delivery: {timeout: 0}\nvars:",
            "c.yaml:16:21: delivery.timeout: expected a number > 0, got 0",
        ),
        (
            "vars:",
            "delivery: {retry_timeouts: 'yes please'}\nvars:",
            "c.yaml:16:28: delivery.retry_timeouts: expected a boolean (true or false), got a string",
        ),
        (
            "  api: v1\n",
            "  api: v1\n  rate_limit: 2.5\n",
            "c.yaml:5:15: bot.rate_limit: expected an integer, got a number",
        ),
        (
            "  api: v1\n",
            "  api: v1\n  base_url: ftp://x\n",
            "c.yaml:5:13: bot.base_url: expected an http:// or https:// URL, or ${VAR}; got 'ftp://x'",
        ),
    ],
)
def test_schema_rules(check: Callable[[str], list[str]], old: str, new: str, expected: str) -> None:
    assert old in GOOD_V1
    assert check(GOOD_V1.replace(old, new, 1)) == expected.split("\n")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    greeting:",
            "    chatfuel_source: x\n    greeting:",
            "c.yaml:15:5: message.attributes.chatfuel_source: attribute names starting with "
            "'chatfuel_' are reserved by the API",
        ),
        (
            "    greeting:",
            "    block_id: x\n    greeting:",
            "c.yaml:15:5: message.attributes.block_id: 'block_id' is a parameter of the API itself, "
            "not an attribute name",
        ),
        (
            "  block_name: Spring Sale",
            "  block_name: Spring Sale\n  block_id: '42'",
            "c.yaml:13:3: message.block_id: give block_name or block_id, not both",
        ),
        (
            "  block_name: Spring Sale\n",
            "",
            "c.yaml:10:1: message: expected block_name or block_id (one is required)",
        ),
        (
            '  user_id: "{{ customer.id }}"',
            '  user_id: "{{ customer.id "',
            "c.yaml:11:12: message.user_id: template syntax error: unexpected end of template, "
            "expected 'end of print statement'.",
        ),
        (
            '  user_id: "{{ customer.id }}"',
            '  user_id: "{{ cusomer.id }}"',
            "c.yaml:11:12: message.user_id: unknown name 'cusomer' in template (available: "
            "customer, vars, campaign)",
        ),
        (
            '  user_id: "{{ customer.id }}"',
            '  user_id: "{{ customer.id }}-{{ vars.nope }}"',
            "c.yaml:11:12: message.user_id: vars.nope is not defined under vars: (defined: season)",
        ),
        (
            "    greeting: \"Hi {{ customer.first_name | default('there') }}\"",
            "    greeting: |\n      Hi\n      {{ customer.first_name | }}",
            "c.yaml:17:1: message.attributes.greeting: template syntax error: expected token "
            "'name', got 'end of print statement'",
        ),
        (
            '  where: customer.opted_in == "yes"',
            "  where: customer.opted_in ==",
            "c.yaml:9:10: audience.where: expression syntax error: unexpected 'end of template'",
        ),
        (
            "  file: customers.csv",
            "  file: nowhere.csv",
            "c.yaml:8:9: audience.file: audience file not found: nowhere.csv",
        ),
        (
            "  file: customers.csv",
            "  file: customers.txt",
            "c.yaml:8:9: audience.file: audience file not found: customers.txt",
        ),
        (
            "  file: customers.csv",
            "  file: customers.csv\n  customers: []",
            "c.yaml:9:3: audience.customers: give file or customers, not both",
        ),
        (
            "  file: customers.csv\n",
            "",
            "c.yaml:7:1: audience: expected file or customers (one is required)",
        ),
        (
            "  token: ${SMAX_BOT_TOKEN}",
            "  token: abcdef123456",
            "c.yaml:6:10: bot.token: a literal token would be committed to git: write ${VAR} "
            "(e.g. ${SMAX_BOT_TOKEN}) and export VAR when running",
        ),
        (
            "  api: v1\n",
            "  api: v1\n  base_url: http://127.0.0.1:99999\n",
            "c.yaml:5:13: bot.base_url: expected a URL like https://api.smax.bot or "
            "http://127.0.0.1:8025 (Port out of range 0-65535)",
        ),
        (
            "  api: v1\n",
            "  api: v1\n  base_url: http://:8025\n",
            "c.yaml:5:13: bot.base_url: the URL has no host; expected e.g. https://api.smax.bot",
        ),
        (
            "  api: v1\n",
            "  api: v1\n  base_url: https://api.smax.bot/?x=1\n",
            "c.yaml:5:13: bot.base_url: a base URL takes no ?query or #fragment: the product adds "
            "the API's own path",
        ),
        (
            "  token: ${SMAX_BOT_TOKEN}",
            "  token: ${SMAX TOKEN}",
            "c.yaml:6:10: bot.token: malformed reference '${SMAX TOKEN}': expected ${NAME} with "
            "NAME made of letters, digits and '_'",
        ),
        (
            "  token: ${SMAX_BOT_TOKEN}",
            "  token: $SMAX_BOT_TOKEN",
            "c.yaml:6:10: bot.token: '$SMAX_BOT_TOKEN' is not read from the environment: write "
            "${SMAX_BOT_TOKEN}",
        ),
        (
            "name: spring-sale\n",
            "name: spring-sale\nname: again\n",
            "c.yaml:3:1: name: duplicate key 'name' (the later one would silently win)",
        ),
    ],
)
def test_semantic_checks(
    check: Callable[[str], list[str]], old: str, new: str, expected: str
) -> None:
    assert old in GOOD_V1
    assert check(GOOD_V1.replace(old, new, 1)) == [expected]


def test_an_unknown_audience_extension_needs_a_format(
    check: Callable[[str], list[str]], tmp_path: Path
) -> None:
    (tmp_path / "people.txt").write_text("id,first_name,opted_in\n1,An,yes\n")
    text = GOOD_V1.replace("  file: customers.csv", "  file: people.txt")
    assert check(text) == [
        "c.yaml:8:9: audience.file: cannot tell the format of 'people.txt' from its extension "
        "(.csv, .json, .jsonl, .ndjson); set audience.format"
    ]
    assert check(text.replace("  file: people.txt", "  file: people.txt\n  format: csv")) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  api: v1\n",
            "  api: v1\n  rate_limit: 100\n",
            "c.yaml:5:15: warning: bot.rate_limit: 100 requests/s is above the public APIs' limit "
            "of 25; raise it only for a private deployment (bot.base_url), the mock server or a "
            "benchmark",
        ),
        (
            "  block_name: Spring Sale",
            "  block_name: ${BLOCK}",
            "c.yaml:12:15: warning: message.block_name: ${...} is only read from the environment "
            "in bot.token, bot.id and bot.base_url; here it is sent as literal text",
        ),
    ],
)
def test_warnings_do_not_make_a_file_invalid(
    check: Callable[[str], list[str]], tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = GOOD_V1.replace(old, new, 1)
    assert check(text) == [expected]
    path = tmp_path / "c.yaml"
    assert [str(w).replace(str(tmp_path) + "/", "") for w in campaigns.load(path).warnings] == [
        expected
    ]


def test_a_private_deployment_may_go_faster_without_a_warning(
    check: Callable[[str], list[str]],
) -> None:
    text = GOOD_V1.replace("  api: v1\n", "  api: v1\n  rate_limit: 100\n  base_url: http://x\n")
    assert check(text) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '  messages:\n    - text: "Hello"\n',
            "",
            "c.yaml:9:1: message: expected block_id or messages (one is required)",
        ),
        (
            "  messages:",
            "  block_id: '7'\n  messages:",
            "c.yaml:13:3: message.messages: give block_id or messages, not both",
        ),
        (
            '    id: "{{ customer.id }}"',
            "    id: ''",
            "c.yaml:10:3: message.customer: no customer identifier template: give id, email, phone "
            "or fbid",
        ),
        (
            '  customer:\n    id: "{{ customer.id }}"',
            "  customer: {}",
            "c.yaml:10:13: message.customer: expected at least one of: email, fbid, id, phone",
        ),
        (
            "  messages:",
            "  priority: [fbid, fbid]\n  messages:",
            "c.yaml:12:13: message.priority: items must not repeat",
        ),
        (
            "  messages:",
            "  user_id: x\n  messages:",
            "c.yaml:12:3: message.user_id: unknown key 'user_id' (expected one of: block_id, "
            "customer, messages, messaging_tag, notification_messages_token, one_time_notif_token, "
            "priority)",
        ),
        (
            '    - text: "Hello"',
            "    - {}",
            "c.yaml:13:7: message.messages[0]: missing required key 'text'",
        ),
    ],
)
def test_v2_rules(check: Callable[[str], list[str]], old: str, new: str, expected: str) -> None:
    assert old in GOOD_V2
    assert check(GOOD_V2.replace(old, new, 1)) == [expected]


def test_chatfuel_takes_exactly_one_of_block_name_block_id_flow_name(
    check: Callable[[str], list[str]],
) -> None:
    text = GOOD_V1.replace("  api: v1", "  api: chatfuel")
    assert check(text) == []
    assert check(text.replace("  block_name: Spring Sale", "  block_name: A\n  flow_name: B")) == [
        "c.yaml:13:3: message.flow_name: give one of block_name, block_id, flow_name, not "
        "block_name and flow_name"
    ]
    assert check(GOOD_V1.replace("  block_name: Spring Sale", "  flow_name: B")) == [
        "c.yaml:10:1: message: expected block_name or block_id (one is required)",
        "c.yaml:12:3: message.flow_name: unknown key 'flow_name'; did you mean 'block_name'? "
        "(expected one of: attributes, block_id, block_name, messaging_tag, user_id)",
    ]


def test_every_problem_is_reported_at_once(check: Callable[[str], list[str]]) -> None:
    text = (
        GOOD_V1.replace("version: 1", "version: 3")
        .replace("mesage", "x")
        .replace("  api: v1", "  api: v9")
    )
    assert len(check(text)) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "c.yaml:1:1: expected a mapping of campaign keys, got nothing"),
        ("- a\n- b\n", "c.yaml:1:1: expected a mapping of campaign keys, got list"),
        (
            "a: [\n",
            "c.yaml:2:1: invalid YAML: while parsing a flow node expected the node "
            "content, but found '<stream end>'",
        ),
        (
            "a: \x00",
            "c.yaml:1:1: invalid YAML: unacceptable character #x0000: special characters "
            "are not allowed",
        ),
    ],
)
def test_files_that_are_not_campaigns(
    check: Callable[[str], list[str]], text: str, expected: str
) -> None:
    assert check(text) == [expected]


def test_load_builds_frozen_typed_records(tmp_path: Path) -> None:
    (tmp_path / "customers.csv").write_text("id,first_name,opted_in\n1,An,yes\n")
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_V1)
    c = campaigns.load(path)
    assert c.name == "spring-sale"
    assert c.bot.api == "v1"
    assert c.bot.rate_limit == 25
    assert c.audience.file == tmp_path / "customers.csv"
    assert c.audience.format == "csv"
    assert isinstance(c.message, V1Message)
    assert c.message.attributes == (
        ("greeting", "Hi {{ customer.first_name | default('there') }}"),
    )
    assert c.delivery.concurrency == 25
    assert c.delivery.retry_timeouts is False
    with pytest.raises(AttributeError):
        c.name = "other"  # type: ignore[misc]
    path.write_text(GOOD_V2)
    assert isinstance(campaigns.load(path).message, V2Message)


def test_load_raises_with_every_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD_V1.replace("version: 1", "version: 2"))
    with pytest.raises(InvalidCampaign) as info:
        campaigns.load(path)
    assert [p.message for p in info.value.problems] == [
        "expected 1, got 2",
        f"audience file not found: {tmp_path}/customers.csv",
    ]


def test_expand_takes_files_folders_and_globs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/one.yaml", "a/two.yml", "a/notes.txt", "three.yaml"):
        (tmp_path / name).write_text("x: 1\n")
    assert campaigns.expand([str(tmp_path / "a")]) == [
        tmp_path / "a/one.yaml",
        tmp_path / "a/two.yml",
    ]
    assert campaigns.expand([str(tmp_path / "*.yaml"), str(tmp_path / "three.yaml")]) == [
        tmp_path / "three.yaml"
    ]


def _mutations(data: object, path: tuple = ()) -> list[tuple[tuple, object]]:
    out: list[tuple[tuple, object]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _mutations(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _mutations(value, (*path, i))
    for replacement in (None, 5, "", [1], {"k": 1}, True, "{{"):
        out.append((path, replacement))
    return out


def _replace(data: object, path: tuple, value: object) -> object:
    if not path:
        return value
    import copy

    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return data


@pytest.mark.parametrize("good", [GOOD_V1, GOOD_V2, GOOD_V1.replace("api: v1", "api: chatfuel")])
def test_no_shape_of_bad_input_crashes_validation(good: str, tmp_path: Path) -> None:
    """Every value of a good campaign swapped for every wrong type: problems, never a crash."""
    import yaml

    (tmp_path / "customers.csv").write_text("id,first_name,opted_in\n1,An,yes\n")
    data = yaml.safe_load(good)
    path = tmp_path / "c.yaml"
    for where, value in _mutations(data):
        path.write_text(yaml.safe_dump(_replace(data, where, value)))
        problems, _ = campaigns.problems_of(path)  # must not raise
        if not any(p.severity == "error" for p in problems):
            campaigns.load(path)  # and a file that passes must build


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "Hi {{ customer.first_name | default('there') }}",
            "Hi {{ customer.firstname | default('there') }}",
            "c.yaml:15:15: message.attributes.greeting: customer.firstname: no such column in the "
            "audience (columns: first_name, id, opted_in); did you mean customer.first_name?",
        ),
        (
            'where: customer.opted_in == "yes"',
            'where: customer.optedin == "yes"',
            "c.yaml:9:10: audience.where: customer.optedin: no such column in the audience "
            "(columns: first_name, id, opted_in); did you mean customer.opted_in?",
        ),
        (
            'where: customer.opted_in == "yes"',
            'where: customer.opted_in = "yes"',
            "c.yaml:9:10: audience.where: expression syntax error: use == to compare (= assigns)",
        ),
        (
            '  user_id: "{{ customer.id }}"',
            "  user_id: \"{{ customer['ID'] }}\"",
            "c.yaml:11:12: message.user_id: customer.ID: no such column in the audience (columns: "
            "first_name, id, opted_in); did you mean customer.id?",
        ),
    ],
)
def test_templates_may_read_only_columns_the_audience_has(
    check: Callable[[str], list[str]], old: str, new: str, expected: str
) -> None:
    assert old in GOOD_V1
    assert check(GOOD_V1.replace(old, new)) == [expected]


def test_an_audience_outside_the_repository_is_refused(
    check: Callable[[str], list[str]], tmp_path: Path
) -> None:
    (tmp_path / ".git").mkdir()
    outside = tmp_path.parent / f"{tmp_path.name}-export.csv"
    outside.write_text("id,first_name,opted_in\n1,An,yes\n")
    try:
        text = GOOD_V1.replace("file: customers.csv", f"file: ../{outside.name}")
        assert check(text) == [
            f"c.yaml:8:9: audience.file: {outside} is outside the campaign's repository "
            f"({tmp_path}); audience files live beside their campaign. To read a local export on "
            "purpose, run with --audience-outside-repo"
        ]
        # The campaign cannot allow it itself; the person running the command can.
        assert (
            "unknown key 'outside_repository'"
            in check(text.replace("audience:\n", "audience:\n  outside_repository: true\n"))[0]
        )
        check(text)
        assert campaigns.problems_of(tmp_path / "c.yaml", outside_repo=True)[0] == []
        (tmp_path / "link.csv").symlink_to(outside)  # a link inside pointing outside
        assert (
            "is outside the campaign's repository"
            in check(GOOD_V1.replace("file: customers.csv", "file: link.csv"))[0]
        )
    finally:
        outside.unlink()


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ", "/dev/zero"])
def test_system_files_are_never_an_audience(
    check: Callable[[str], list[str]], tmp_path: Path, target: str
) -> None:
    (tmp_path / "a.csv").symlink_to(target)
    check(GOOD_V1.replace("  file: customers.csv", "  file: a.csv"))
    problems, _ = campaigns.problems_of(tmp_path / "c.yaml", outside_repo=True)
    messages = [p.message for p in problems]
    if target != "/etc/passwd":
        assert messages == [f"{Path(target).resolve()} is a system file, never an audience"]
    else:  # allowed by the command line: read, and found to have no such columns
        assert messages
        assert all("no such column" in m for m in messages)


def test_a_fifo_is_not_an_audience(check: Callable[[str], list[str]], tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.csv")
    problems = check(GOOD_V1.replace("file: customers.csv", "file: pipe.csv"))
    assert problems == [
        "c.yaml:8:9: audience.file: pipe.csv is not a regular file (a pipe, a device or a folder)"
    ]


def test_a_malformed_audience_is_a_validate_error(
    check: Callable[[str], list[str]], tmp_path: Path
) -> None:
    (tmp_path / "customers.csv").write_text("id,first_name,id\n1,An,2\n")
    assert check(GOOD_V1) == [
        "c.yaml:8:9: audience.file: the audience cannot be read: customers.csv:1: "
        "the column 'id' appears twice in the header (columns 1 and 3); one would silently win: "
        "rename one"
    ]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ vars['update']({'x': 1}) }}",
            "c.yaml:15:15: message.attributes.greeting: templates read values, not methods: vars "
            "has no method to call (write customer.x, vars.x, campaign.name)",
        ),
        (
            "{{ 'x' * 10**9 }}",
            "c.yaml:15:15: message.attributes.greeting: this template fails for every customer: "
            "a value longer than 64 KB in the message templates",
        ),
    ],
)
def test_templates_that_call_methods_or_always_break_a_limit_are_refused(
    check: Callable[[str], list[str]], template: str, expected: str
) -> None:
    text = GOOD_V1.replace("Hi {{ customer.first_name | default('there') }}", template)
    assert check(text) == [expected]
