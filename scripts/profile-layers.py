#!/usr/bin/env python3
"""Where a server's CPU goes, by layer: reads `perf script` output (from `perf record -g` on a
`hospital serve` process under load) and gives each sample to the innermost frame of its stack
that belongs to a known layer (a retain or a malloc inside SQLKit's serializer is SQLKit's), then
prints the share of each layer. Samples with no known frame are "other (runtime, scheduling)".

    perf record -F 499 -g -p PID -o perf.data -- sleep 15
    perf script -i perf.data | python3 scripts/profile-layers.py
"""

import re
import sys
from collections import Counter

# A Swift symbol names its module first (`$s9FluentKit5Model...`): the module says the layer.
# C code by its symbol names. The innermost frame with a known layer wins.
MODULES = {
    "SQLiteNIO": "SQLite driver (SQLiteNIO)",
    "PostgresNIO": "PostgreSQL driver (PostgresNIO)",
    "SQLKit": "SQL building (SQLKit)", "SQLiteKit": "SQL building (SQLKit)", "PostgresKit": "SQL building (SQLKit)",
    "FluentKit": "ORM (FluentKit)", "FluentSQLiteDriver": "ORM (FluentKit)",
    "FluentPostgresDriver": "ORM (FluentKit)", "FluentSQL": "ORM (FluentKit)", "Fluent": "ORM (FluentKit)",
    "Audit": "audit trail",
    "Identity": "sign-in (token, role table)", "JWTKit": "sign-in (token, role table)",
    "Crypto": "sign-in (token, role table)",
    "Prometheus": "metrics", "CoreMetrics": "metrics", "Metrics": "metrics",
    "Tracing": "tracing", "Instrumentation": "tracing", "OTel": "tracing", "ServiceContextModule": "tracing",
    "Logging": "logging",
    "ReceptionService": "service code", "DiagnosisService": "service code", "ExaminationService": "service code",
    "PatientManagementService": "service code", "ReceptionDomain": "service code",
    "DiagnosisDomain": "service code", "ExaminationDomain": "service code", "PatientManagementDomain": "service code",
    "SharedKernel": "service code", "Contracts": "service code", "Messaging": "service code",
    "MessagingLocal": "service code", "Storage": "service code", "Runtime": "service code",
    "Gateway": "gateway (proxy, rate limit)", "HTTPProxy": "gateway (proxy, rate limit)", "Web": "screens",
    "AsyncHTTPClient": "HTTP client (AsyncHTTPClient)",
    "Vapor": "middleware chain and routing (Vapor, ServiceKit)", "ServiceKit": "middleware chain and routing (Vapor, ServiceKit)",
    "RoutingKit": "middleware chain and routing (Vapor, ServiceKit)",
    "NIOHTTP1": "HTTP parsing and encoding (NIOHTTP1)", "NIOHTTPCompression": "HTTP parsing and encoding (NIOHTTP1)",
    "NIOPosix": "event loops and sockets (NIO)", "NIOCore": "event loops and sockets (NIO)",
    "NIOConcurrencyHelpers": "event loops and sockets (NIO)", "NIOFoundationCompat": "event loops and sockets (NIO)",
}
C_SYMBOLS = [
    (re.compile(r"^sqlite3|^yy_|^_?sqlite"), "SQLite (the engine)"),
    (re.compile(r"^c_nio_llhttp"), "HTTP parsing and encoding (NIOHTTP1)"),
]
MANGLED = re.compile(r"^\$s(\d+)")


def layer_of(frames):
    for frame in frames:  # innermost first, as perf script prints them
        parts = frame.split(None, 2)
        if len(parts) < 2:
            continue
        symbol = parts[1]
        if "[kernel.kallsyms]" in frame:
            return "kernel (syscalls, network)"
        match = MANGLED.match(symbol)
        if match:
            length = int(match.group(1))
            module = symbol[match.end():match.end() + length]
            if module in MODULES:
                return MODULES[module]
            if module.startswith(("Foundation", "_Foundation")) and ("URL" in symbol):
                return "URLs (Foundation)"
            continue
        for pattern, name in C_SYMBOLS:
            if pattern.search(symbol):
                return name
    return "other (Swift runtime, Foundation, scheduling)"


def main():
    counts = Counter()
    frames = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                counts[layer_of(frames)] += 1
            frames = []
            continue
        if line.startswith((" ", "\t")):
            frames.append(line.strip())
    if frames:
        counts[layer_of(frames)] += 1
    total = sum(counts.values())
    if not total:
        sys.exit("no samples")
    print(f"{total} samples")
    for name, count in counts.most_common():
        print(f"  {100 * count / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
