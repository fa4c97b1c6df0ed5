from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from runner.cli import main

REPO = Path(__file__).resolve().parents[2]  # the repository, above tests/commands/


def test_the_examples_validate(invoke: Callable[..., Result]) -> None:
    result = invoke("validate", REPO / "campaigns")
    assert result.exit_code == 0
    assert result.output == "3 campaign files valid\n"


def test_an_invalid_file_exits_2_with_every_problem(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("bad.yaml", "version: 2\nname: x\n")
    result = invoke("validate", "bad.yaml")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "bad.yaml:1:1: missing required key 'audience'",
        "bad.yaml:1:1: missing required key 'bot'",
        "bad.yaml:1:1: missing required key 'message'",
        "bad.yaml:1:10: version: expected 1, got 2",
        "1 of 1 campaign file invalid",
    ]


def test_an_unquoted_template_is_said_to_need_quotes(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    """YAML reads {{ customer.id }} as a mapping: "got a mapping" alone puzzles."""
    good = (REPO / "campaigns" / "spring-sale.yaml").read_text()
    write("customers.csv", "messenger_user_id,first_name,opted_in\n1,An,yes\n")
    unquoted = good.replace(
        '"{{ customer.messenger_user_id }}"', "{{ customer.messenger_user_id }}"
    )
    write("c.yaml", unquoted)
    result = invoke("validate", "c.yaml")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "c.yaml:17:12: message.user_id: expected a string, got a mapping (a template must be "
        'quoted: "{{ customer.id }}")'
    )


def test_folders_globs_and_several_files(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    good = (REPO / "campaigns" / "spring-sale.yaml").read_text()
    write("c/customers.csv", "messenger_user_id,first_name,opted_in\n1,An,yes\n")
    write("c/a.yaml", good)
    write("c/b.yml", good.replace("spring-sale-2026", "other"))
    write("c/broken.yaml", "name: [")
    result = invoke("validate", "c/*.y*ml")
    assert result.exit_code == 2
    assert "2 of 3" not in result.output
    assert "1 of 3 campaign files invalid" in result.output
    assert invoke("validate", "c/a.yaml", "c/b.yml").exit_code == 0


def test_two_files_of_one_name_are_invalid_and_one_file_twice_is_one(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    """`run` refuses two files of one name; a check that passed them let it reach main."""
    good = (REPO / "campaigns" / "spring-sale.yaml").read_text()
    write("c/customers.csv", "messenger_user_id,first_name,opted_in\n1,An,yes\n")
    write("c/a.yaml", good)
    write("c/copy.yaml", good)
    result = invoke("validate", "c/")
    assert result.exit_code == 2
    line = next(line for line in result.output.splitlines() if line.startswith("c/a.yaml:"))
    assert line == (
        "c/a.yaml:3:7: name: 'spring-sale-2026' is the name of c/copy.yaml too: the two would "
        "share one state, and a run refuses them together; give each campaign its own name"
    )
    assert "2 of 2 campaign files invalid" in result.output
    # One file, however its path is spelled, is one campaign.
    assert invoke("validate", "c/a.yaml", "./c/../c/a.yaml").output == "1 campaign file valid\n"


def test_json_output_for_machines(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("bad.yaml", "version: 1\nname: Bad Name\n")
    result = invoke("validate", "--output", "json", "bad.yaml")
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["valid"] is False
    assert data["files"][0]["problems"][-1] == {
        "file": "bad.yaml",
        "line": 2,
        "column": 7,
        "path": "name",
        "severity": "error",
        "message": "expected a slug: lowercase letters, digits, '-' and '_', at most 100 "
        "(e.g. spring-sale-2026); got 'Bad Name'",
    }


def test_nothing_to_validate_is_a_usage_error(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("validate", "empty")
    assert result.exit_code == 2
    assert result.output == "no campaign files found in empty\n"
    result = invoke("validate", "nothing-*.yaml")
    assert (result.exit_code, result.output) == (2, "nothing-*.yaml: no campaign files match\n")


def test_schema_prints_the_packaged_schema(invoke: Callable[..., Result]) -> None:
    result = invoke("schema")
    assert json.loads(result.output) == json.loads(
        (REPO / "schemas/campaign.schema.json").read_text()
    )


def test_python_dash_m_runner_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runner", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("campaign, version ")


def test_garbage_never_yields_a_traceback(invoke: Callable[..., Result], tmp_path: Path) -> None:
    samples = [
        b"\x00\x01\x02",
        b"\xff\xfe",
        b"[1, 2",
        b"- a\n- b",
        b"version: 1\nbot: 5\n",
        b"version: 1\nmessage: {attributes: [1]}\naudience: {where: 5}\n",
        b"{{",
    ]
    for i, data in enumerate(samples):
        (tmp_path / f"g{i}.yaml").write_bytes(data)
        result = invoke("validate", f"g{i}.yaml")
        assert result.exit_code == 2, data
        assert "Traceback" not in result.output


def test_affected_selects_campaigns_by_their_file_or_their_audience(
    write: Callable[..., Path],
) -> None:
    import shutil

    shutil.copytree(REPO / "campaigns", "campaigns")
    write("campaigns/odd $(touch PWNED) name.yaml", "version: 1\n")
    changed = "campaigns/customers.csv\0campaigns/odd $(touch PWNED) name.yaml\0README.md\0"
    runner = CliRunner()
    with runner.isolation(input=changed) as (out, _, _):
        code = main(["affected", "-z", "campaigns/"])
    assert code == 0
    assert out.getvalue().decode().split("\0") == [
        "campaigns/odd $(touch PWNED) name.yaml",
        "campaigns/spring-sale.yaml",  # its audience changed
        "",
    ]
    assert not Path("PWNED").exists()


def test_affected_never_prints_a_path_that_reads_as_an_option(
    write: Callable[..., Path],
) -> None:
    write("--root.yaml", "version: 1\n")
    runner = CliRunner()
    with runner.isolation(input="--root.yaml\0") as (out, _, _):
        code = main(["affected", "-z", "."])
    assert code == 0
    assert out.getvalue().decode() == "./--root.yaml\0"


def test_audience_text_in_a_problem_reaches_the_terminal_inert(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("people.csv", "id,\x1b]0;PWNED\x07name\n1,An\n")
    write(
        "c.yaml",
        "version: 1\nname: x\nbot: {id: '1', token: '${T}'}\naudience: {file: people.csv}\n"
        "message: {user_id: '{{ customer.id }}', block_name: '{{ customer.nme }}'}\n",
    )
    result = invoke("validate", "c.yaml")
    assert result.exit_code == 2
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert "?]0;PWNED?name" in result.output


def test_an_unknown_filter_or_test_is_a_problem_with_a_guess_not_a_traceback(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("people.csv", "id,first_name\n1,An\n")
    write(
        "campaigns/typo.yaml",
        """\
        version: 1
        name: typo
        bot: {api: v1, id: "1", token: "${TEST_TOKEN}"}
        audience: {file: ../people.csv}
        message:
          user_id: "{{ customer.id }}"
          block_name: B
          attributes:
            greeting: "Hi {{ customer.first_name | defualt('there') }}"
            even: "{{ customer.id is evenn }}"
        """,
    )
    write("campaigns/fine.yaml", "version: 1\nname: fine\n")  # a broken neighbour, also shown
    result = invoke("validate", "campaigns/", "--audience-outside-repo")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert (
        "campaigns/typo.yaml:9:15: message.attributes.greeting: unknown filter 'defualt' "
        "(did you mean 'default'?)" in result.output
    )
    assert (
        "campaigns/typo.yaml:10:11: message.attributes.even: unknown test 'evenn' "
        "(did you mean 'even'?)" in result.output
    )
    assert "campaigns/fine.yaml:" in result.output  # the other file was checked too
    for command in ("plan", "run"):
        refused = invoke(command, "campaigns/typo.yaml", "--audience-outside-repo")
        assert refused.exit_code == 2
        assert "unknown filter 'defualt'" in refused.output


def test_a_semicolon_separated_csv_is_named_and_read_when_declared(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write("people.csv", "id;first_name;tz\n1;An;UTC\n2;Binh;UTC\n")
    campaign = """\
        version: 1
        name: semi
        bot: {{api: v1, id: "1", token: "${{TEST_TOKEN}}"}}
        audience: {{file: people.csv{extra}}}
        message:
          user_id: "{{{{ customer.id }}}}"
          block_name: B
          attributes: {{name: "{{{{ customer.first_name }}}}"}}
        """
    write("semi.yaml", campaign.format(extra=""))
    refused = invoke("validate", "semi.yaml")
    assert refused.exit_code == 2
    assert refused.output.splitlines() == [
        "semi.yaml:4:18: audience.file: the header reads as one column 'id;first_name;tz': the "
        'file looks ";"-separated (as Excel saves it where the comma is the decimal mark); '
        'set audience.delimiter: ";"',
        "1 of 1 campaign file invalid",
    ]
    write("semi.yaml", campaign.format(extra=', delimiter: ";"'))
    assert invoke("validate", "semi.yaml").exit_code == 0
    planned = invoke("plan", "semi.yaml", "--output", "json")
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["summary"]["counts"]["planned"] == 2


def test_a_nul_in_the_audience_name_and_empty_quiet_hours_are_problems(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    write(
        "odd.yaml",
        """\
        version: 1
        name: odd
        bot: {api: v1, id: "1", token: "${TEST_TOKEN}"}
        audience: {file: "people\\0.csv"}
        message: {user_id: "{{ customer.id }}", block_name: B}
        schedule: {timezone: UTC, quiet_hours: {start: "21:00", end: "21:00"}}
        """,
    )
    for command in ("validate", "run"):
        result = invoke(command, "odd.yaml")
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert "odd.yaml:4:18: audience.file: the file name holds a NUL character" in result.output
        assert "schedule.quiet_hours.end: quiet hours that start and end at 21:00 are never" in (
            result.output
        )


def test_a_campaign_file_too_large_to_be_configuration_is_refused_before_parsing(
    invoke: Callable[..., Result], write: Callable[..., Path]
) -> None:
    flow = ",".join("1" for _ in range(500_000))  # 1 MB: 12 s and 368 MB to refuse, parsed
    write("big.yaml", f"version: 1\nname: big\nvars:\n  flow: [{flow}]\n")
    result = invoke("validate", "big.yaml")
    assert result.exit_code == 2
    assert result.output.splitlines()[0] == (
        "big.yaml:1:1: the file is larger than 128 KiB: a campaign file is configuration; "
        "keep a large audience in audience.file (CSV, JSON Lines or JSON), not inline"
    )
