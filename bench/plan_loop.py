"""`campaign plan` against a hand-written loop over the same 200,000-row audience.

The loop is what someone would write without the tool: `csv.DictReader`, the campaign's
`where:` and templates compiled once with Jinja and rendered per row, the query made with
`urlencode`, and one JSON line per row written to a file. `campaign plan` does that and more
(validation, strict rendering with reasons, dedupe, the state, the summaries and report.html).
Each side is a process of its own, timed from start to exit (start-up included: it is what a
person waits for), pinned to the same core; the sides alternate, and the ratio of the medians
is printed (goal: plan at least 4 times as fast). Both run as installed: with their bytecode
cached (an environment with PYTHONDONTWRITEBYTECODE set would otherwise compile the project's
modules from source at every start, about 45 ms here, which `pip install .` never leaves to
do), after one untimed run of each that also brings the audience into the page cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import CLIENT_CORES, median, pin, timed
from make_audience import write

LOOP = """
import csv, json, sys
from urllib.parse import urlencode
import jinja2
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
where = env.compile_expression('customer.opted_in == "yes"')
user = env.from_string("{{ customer.messenger_user_id }}")
attributes = {
    "coupon": env.from_string("SPRING-{{ customer.messenger_user_id[-4:] }}"),
    "greeting": env.from_string("Hi {{ customer.first_name | default('there') }}"),
}
base = "https://api.chatfuel.com/bots/6123abcd/users/{}/send?"
with open(sys.argv[1], newline="", encoding="utf-8") as f, open(sys.argv[2], "w") as out:
    for n, row in enumerate(csv.DictReader(f), 1):
        if not where(customer=row):
            out.write(json.dumps({"row": n, "status": "skipped", "reason": "filtered"}) + "\\n")
            continue
        user_id = user.render(customer=row)
        query = {"bot_token": "***", "block_name": "Spring Sale"}
        query.update({k: t.render(customer=row) for k, t in attributes.items()})
        request = {"method": "POST", "url": base.format(user_id) + urlencode(query)}
        line = {"row": n, "recipient": user_id, "status": "planned", "request": request}
        out.write(json.dumps(line) + "\\n")
"""


_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _process(argv: list[str], cwd: Path) -> None:
    subprocess.run(
        argv,
        cwd=cwd,
        check=True,
        env=_ENV,
        stdout=subprocess.DEVNULL,
        preexec_fn=(lambda: pin(CLIENT_CORES)) if CLIENT_CORES else None,
    )


def measure(rows: int, repeats: int) -> dict[str, object]:
    plans: list[float] = []
    loops: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        campaign = write(folder, rows)
        audience = folder / f"audience-{rows}.csv"
        loop = [sys.executable, "-c", LOOP, str(audience), "out"]
        _process(loop, folder)  # warm: bytecode written, the audience in the page cache
        _process([sys.executable, "-m", "runner", "plan", str(campaign), "--report", "w"], folder)
        for i in range(repeats):
            loops.append(timed(lambda: _process(loop, folder)))
            plans.append(
                timed(
                    lambda i=i: _process(
                        [
                            sys.executable,
                            "-m",
                            "runner",
                            "plan",
                            str(campaign),
                            "--report",
                            f"r{i}",
                        ],
                        folder,
                    )
                )
            )
    return {
        "plan_s": round(median(plans), 2),
        "loop_s": round(median(loops), 2),
        "ratio": round(median(loops) / median(plans), 2),
        "ratios": [round(loop / plan, 2) for loop, plan in zip(loops, plans, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    got = measure(args.rows, args.repeats)
    print(
        f"plan vs a hand-written loop over {args.rows} rows: plan {got['plan_s']} s, loop "
        f"{got['loop_s']} s; plan is {got['ratio']}x as fast (goal >= 4; per pair "
        f"{got['ratios']})"
    )


if __name__ == "__main__":
    main()
