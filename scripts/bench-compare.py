#!/usr/bin/env python3
"""Before and after in one run: `hospital bench --serve` with two server builds, alternately,
the same client (the after build's `bench`) driving both; prints each round, then the medians
and the after/before ratios. Measure release builds, on a machine doing nothing else:

    python3 scripts/bench-compare.py --before /tmp/hospital-old --after .build/release/hospital

Each round runs, for each build: whole visits (--visits at --concurrency, with requests one by
one at concurrency 16 after them: --reads of each kind), then registrations only.
"""

import argparse
import os
import re
import statistics
import subprocess


def bench(client: str, server: str, *args: str, env=None) -> str:
    return subprocess.run(
        [client, "bench", "--serve", "--server-binary", server, *args],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True).stdout


def figures(out: str) -> dict:
    found = {}
    match = re.search(r"whole visits at concurrency \d+ in [\d.]+ s: ([\d.]+)", out)
    if match:
        found["visits/s"] = float(match.group(1))
    match = re.search(r"registrations at concurrency \d+ in [\d.]+ s: ([\d.]+)", out)
    if match:
        found["registrations/s"] = float(match.group(1))
    match = re.search(r"([\d.]+) ms per visit", out)
    if match:
        key = "CPU ms/registration" if "registrations/s" in found else "CPU ms/visit"
        found[key] = float(match.group(1))
    match = re.search(r"request latency ms\s+p50 ([\d.]+)\s+p99 ([\d.]+)", out)
    if match and "visits/s" in found:
        found["request p50 ms"] = float(match.group(1))
    for hop, p50, p99 in re.findall(r"hop (.+?)\s+p50 ([\d.]+)\s+p99 ([\d.]+)", out):
        found[f"{hop} p99 ms"] = float(p99)
    for name, cpu in re.findall(r"^  (GET .+?)\s{2,}\s*[\d.]+ req/s\s+([\d.]+) µs server CPU", out, re.M):
        found[f"{name[:52]} µs"] = float(cpu)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--visits", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reads", type=int, default=5000)
    parser.add_argument("--registrations", type=int, default=1000)
    args = parser.parse_args()

    results = {"before": [], "after": []}
    for round in range(args.rounds):
        for name in ("before", "after"):
            server = getattr(args, name)
            found = figures(bench(args.after, server, "--visits", str(args.visits),
                                  "--concurrency", str(args.concurrency), "--reads", str(args.reads)))
            found.update(figures(bench(args.after, server, "--visits", str(args.registrations),
                                       "--concurrency", "16", "--registrations-only")))
            results[name].append(found)
            print(f"round {round + 1} {name:6}: " + ", ".join(f"{k} {v:.1f}" for k, v in found.items()), flush=True)
    print(f"\nmedians of {args.rounds} rounds (before: {args.before}, after: {args.after}):")
    for key in results["before"][0]:
        before = [r[key] for r in results["before"] if key in r]
        after = [r[key] for r in results["after"] if key in r]
        if not before or not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        print(f"  {key:58} before {b:9.1f}   after {a:9.1f}   after/before {a / b if b else float('nan'):.2f}")


if __name__ == "__main__":
    main()
