"""Summarise a py-spy ``--format raw`` profile (as written by ``persona bench --profile``).

Usage::

    .venv/bin/python -m bench.profile_report bench/results/<stamp>-pipeline-profile.txt [--top 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.stats import profile_summary, self_time_by_package


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collapsed", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    lines = args.collapsed.read_text().splitlines()
    print("self time by component (% of samples)")
    for group, share in self_time_by_package(lines):
        print(f"{share:6.2f}  {group}")
    summary = profile_summary(lines, top=args.top)
    for kind in ("self", "inclusive"):
        print(f"\ntop frames by {kind} time (% of samples)")
        for frame, share in summary[kind]:
            print(f"{share:6.2f}  {frame}")


if __name__ == "__main__":
    main()
