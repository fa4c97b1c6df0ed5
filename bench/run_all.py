"""Run every benchmark and print the figures side by side.

python bench/run_all.py           # the full set (about five minutes on two cores)
python bench/run_all.py --smoke   # tiny sizes: proves the scripts still work (CI runs this)
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

FULL = [
    ["pacing.py", "--requests", "1000", "--rate", "25"],
    ["throughput.py", "--requests", "20000", "--repeats", "5"],
    ["cpu.py", "--requests", "10000", "--repeats", "3"],
    ["floor.py", "--rows", "50000", "--repeats", "5"],
    ["plan_scale.py", "--sizes", "50000,200000,1000000", "--repeats", "3"],
    ["plan_loop.py", "--rows", "200000", "--repeats", "5"],
    ["multibot.py", "--bots", "40", "--rate", "25", "--per-bot", "250"],
    ["multibot.py", "--bots", "40", "--rate", "25", "--per-bot", "250", "--state", "postgres"],
    ["state_backends.py", "--requests", "20000", "--repeats", "3"],
    ["aimd.py", "--rate", "25", "--requests", "1000"],
]
SMOKE = [
    ["pacing.py", "--requests", "20", "--rate", "20"],
    ["throughput.py", "--requests", "300", "--repeats", "1"],
    ["cpu.py", "--requests", "200", "--repeats", "1"],
    ["floor.py", "--rows", "500", "--repeats", "1"],
    ["plan_scale.py", "--sizes", "2000,4000", "--repeats", "1"],
    ["plan_loop.py", "--rows", "2000", "--repeats", "1"],
    ["multibot.py", "--bots", "3", "--rate", "10", "--per-bot", "8"],
    ["multibot.py", "--bots", "3", "--rate", "10", "--per-bot", "8", "--state", "postgres"],
    ["state_backends.py", "--requests", "300", "--repeats", "1"],
    ["aimd.py", "--rate", "10", "--requests", "20"],
]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the scripts")
    parser.add_argument(
        "--only",
        choices=["postgres", "others"],
        help="only the benchmarks that need a PostgreSQL server ($CAMPAIGN_BENCH_POSTGRES), "
        "or only the others",
    )
    parser.add_argument("--script", help="only this script's runs (pacing.py, cpu.py, ...)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    failed = 0
    for script, *options in SMOKE if args.smoke else FULL:
        postgres = script == "state_backends.py" or "postgres" in options
        if args.only and (args.only == "postgres") != postgres:
            continue
        if args.script and script != args.script:
            continue
        done = subprocess.run(
            [sys.executable, str(HERE / script), *options], capture_output=True, text=True
        )
        sys.stdout.write(done.stdout)
        if done.returncode != 0:
            failed += 1
            sys.stdout.write(f"{script} failed:\n{done.stderr[-2000:]}\n")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
