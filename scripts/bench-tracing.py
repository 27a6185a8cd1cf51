#!/usr/bin/env python3
"""What tracing costs: `hospital bench --serve` run alternately with tracing off and on (every
span sampled and exported over OTLP/HTTP to a local sink), in one run; prints each round and the
medians, with on/off ratios. Measure a release build:

    swift build -c release && python3 scripts/bench-tracing.py --binary .build/release/hospital
"""

import argparse
import http.server
import os
import re
import statistics
import subprocess
import threading


class Sink(http.server.BaseHTTPRequestHandler):
    """Takes OTLP/HTTP exports and answers 200, counting requests and bytes (the collector's
    work is not what is measured)."""
    requests = 0
    bytes = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.requests += 1
        Sink.bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run(binary: str, visits: int, concurrency: int, env: dict) -> dict:
    out = subprocess.run(
        [binary, "bench", "--serve", "--visits", str(visits), "--concurrency", str(concurrency)],
        env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
    figures = {
        "visits/s": float(re.search(r"whole visits at concurrency \d+ in [\d.]+ s: ([\d.]+)", out).group(1)),
        "request p50 ms": float(re.search(r"request latency ms\s+p50 ([\d.]+)", out).group(1)),
        "CPU ms/visit": float(re.search(r"([\d.]+) ms per visit", out).group(1)),
    }
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/hospital")
    parser.add_argument("--visits", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    tracing = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "always_on",
    }
    results = {"off": [], "on": []}
    for round in range(args.rounds):
        for mode in ("off", "on"):
            figures = run(args.binary, args.visits, args.concurrency, tracing if mode == "on" else {})
            results[mode].append(figures)
            print(f"round {round + 1} tracing {mode:3}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()),
                  flush=True)
    print(f"spans exported to the sink: {Sink.requests} OTLP requests, {Sink.bytes / 1e6:.1f} MB")
    print(f"medians of {args.rounds} rounds ({args.visits} whole visits at concurrency {args.concurrency} each):")
    for key in results["off"][0]:
        off = statistics.median(r[key] for r in results["off"])
        on = statistics.median(r[key] for r in results["on"])
        print(f"  {key:15} off {off:8.2f}   on {on:8.2f}   on/off {on / off:.3f}   difference {on - off:+.2f}")


if __name__ == "__main__":
    main()
