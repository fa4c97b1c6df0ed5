"""Write a synthetic CSV audience of N rows (and the campaign that reads it) for benchmarks."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

FIRST_NAMES = ["An", "Bình", "Chi", "Dũng", "", "Giang", "Hoa", "Khánh"]

CAMPAIGN = """version: 1
name: bench-{rows}
bot:
  api: v1
  id: "6123abcd"
  token: ${{BENCH_TOKEN}}
  rate_limit: {rate}
  base_url: {base_url}
audience:
  file: {csv_name}
  where: customer.opted_in == "yes"
message:
  user_id: "{{{{ customer.messenger_user_id }}}}"
  block_name: Spring Sale
  attributes:
    coupon: "SPRING-{{{{ customer.messenger_user_id[-4:] }}}}"
    greeting: "Hi {{{{ customer.first_name | default('there') }}}}"
delivery:
  concurrency: {concurrency}
  retries: 0
"""


def write(
    directory: Path,
    rows: int,
    rate: int = 25,
    base_url: str = "http://127.0.0.1:8025",
    concurrency: int = 25,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / f"audience-{rows}.csv"
    if not csv_path.exists():
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["messenger_user_id", "first_name", "opted_in"])
            for i in range(rows):
                name = FIRST_NAMES[i % len(FIRST_NAMES)]
                writer.writerow([f"{10**15 + i}", name, "no" if i % 10 == 0 else "yes"])
    campaign = directory / f"bench-{rows}-{rate}.yaml"
    campaign.write_text(
        CAMPAIGN.format(
            rows=rows, rate=rate, base_url=base_url, csv_name=csv_path.name, concurrency=concurrency
        )
    )
    return campaign


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("rows", type=int)
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    print(write(args.dir, args.rows))
