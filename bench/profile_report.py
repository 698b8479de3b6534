"""Summarise a py-spy ``--format raw`` profile (as written by ``persona bench --profile``).

Usage::

    .venv/bin/python -m bench.profile_report bench/results/<stamp>-pipeline-profile.txt [--top 20]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.stats import profile_summary, self_time_by_package


def share_matching(lines: list[str], patterns: list[str]) -> list[tuple[str, float]]:
    """Percent of samples whose stack has a frame matching each regex.

    >>> share_matching(["a (x.py:1);b (y.py:2) 3", "c (z.py:1) 1"], ["y[.]py", "q"])
    [('y[.]py', 75.0), ('q', 0.0)]
    """
    compiled = [(p, re.compile(p)) for p in patterns]
    hits = dict.fromkeys(patterns, 0)
    total = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        total += int(count_text)
        for pattern, regex in compiled:
            if regex.search(stack):
                hits[pattern] += int(count_text)
    return [(p, round(100 * hits[p] / total, 2) if total else 0.0) for p in patterns]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("collapsed", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--grep", action="append", default=[], help="Also print the share of samples with a frame matching this regex."
    )
    args = parser.parse_args(argv)
    lines = args.collapsed.read_text().splitlines()
    print("self time by component (% of samples)")
    for group, share in self_time_by_package(lines):
        print(f"{share:6.2f}  {group}")
    if args.grep:
        print("\nsamples with a frame matching (% of samples, inclusive)")
        for pattern, share in share_matching(lines, args.grep):
            print(f"{share:6.2f}  {pattern}")
    summary = profile_summary(lines, top=args.top)
    for kind in ("self", "inclusive"):
        print(f"\ntop frames by {kind} time (% of samples)")
        for frame, share in summary[kind]:
            print(f"{share:6.2f}  {frame}")


if __name__ == "__main__":
    main()
