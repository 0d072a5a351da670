#!/usr/bin/env python3
"""Reads the load generator's JSON reports under a results folder and prints, per
scenario, the median of each figure over the rounds for every server and its ratio to
roomcast's (a ratio > 1 means the peer's figure is higher).

File names are <scenario>--<server>--r<round>.json, as bench/run writes them. Scenario
names given after the folder set the order of the tables.

usage: summarize.py [--no-headline] RESULTS_DIR [SCENARIO ...]
"""
import json
import pathlib
import statistics
import sys

# (label, path into the report, scale, better): better is "high" or "low".
S1 = [
    ("conn made", ("connections", "made"), 1, "high"),
    ("connects/s", ("connections", "connects_per_sec"), 1, "high"),
    ("handshake p50 ms", ("connections", "handshake_us", "p50"), 1e-3, "low"),
    ("handshake p99 ms", ("connections", "handshake_us", "p99"), 1e-3, "low"),
    ("RSS/conn KB", ("server", "rss_per_conn_bytes"), 1e-3, "low"),
]
MSG = [
    ("deliveries/s", ("messages", "deliveries_per_sec"), 1, "high"),
    ("deliveries/CPU-s", ("server", "deliveries_per_cpu_sec"), 1, "high"),
    ("CPU-s/100k", ("server", "cpu_secs_per_100k_deliveries"), 1, "low"),
    ("lost", ("messages", "lost"), 1, "low"),
    ("out of order", ("messages", "out_of_order"), 1, "low"),
    ("p50 ms", ("messages", "latency_us", "p50"), 1e-3, "low"),
    ("p99 ms", ("messages", "latency_us", "p99"), 1e-3, "low"),
    ("max ms", ("messages", "latency_us", "max"), 1e-3, "low"),
]
SERVER_ORDER = ["roomcast", "socketioxide", "node", "floor"]


def get(report, path):
    v = report
    for k in path:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return v


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def headline(summary):
    """One row per figure of issue 5's table, from whichever scenarios were run."""
    def m(scenario, server, label):
        return summary.get(scenario, {}).get(server, {}).get(label)

    def pair(a, b, sep="; "):
        return f"{fmt(a)}{sep}{fmt(b)}" if a is not None or b is not None else "–"

    servers = [s for s in SERVER_ORDER if any(s in v for v in summary.values())]
    rows = [
        ("S1 RSS per connection, KB", lambda s: fmt(m("s1", s, "RSS/conn KB"))),
        ("S1 connects/s; handshake p99 ms",
         lambda s: pair(m("s1", s, "connects/s"), m("s1", s, "handshake p99 ms"))),
        ("S2 deliveries per server CPU-s at 100k/s",
         lambda s: fmt(m("s2-100k", s, "deliveries/CPU-s"))),
        ("S2 out of order at 100 msg/s", lambda s: fmt(m("s2-100k", s, "out of order"))),
        ("S2 p99 ms at 50k deliveries/s", lambda s: fmt(m("s2-50k", s, "p99 ms"))),
        ("S3 server CPU-s per 100k deliveries", lambda s: fmt(m("s3", s, "CPU-s/100k"))),
        ("S4 CPU-s per 100k; p99 ms",
         lambda s: pair(m("s4", s, "CPU-s/100k"), m("s4", s, "p99 ms"))),
        ("S5 polling CPU-s per 100k (× its WebSocket cost)",
         lambda s: (f"{fmt(m('s5', s, 'CPU-s/100k'))} ({m('s5', s, 'CPU-s/100k') / m('s5ws', s, 'CPU-s/100k'):.1f}×)"
                    if m("s5", s, "CPU-s/100k") and m("s5ws", s, "CPU-s/100k") else fmt(m("s5", s, "CPU-s/100k")))),
    ]
    lines = ["\n### Headline (issue 5's rows; medians)\n",
             "| figure | " + " | ".join(servers) + " |",
             "|---|" + "---|" * len(servers)]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in servers) + " |")
    return lines


def main():
    # bench/cluster compares a node with a cluster, not the servers of issue 5's table.
    no_headline = "--no-headline" in sys.argv
    if no_headline:
        sys.argv.remove("--no-headline")
    root = pathlib.Path(sys.argv[1])
    runs = {}
    for f in sorted(root.glob("*--*--r*.json")):
        scenario, server, _ = f.stem.split("--")
        try:
            report = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        runs.setdefault(scenario, {}).setdefault(server, []).append(report)
    if not runs:
        print(f"no reports under {root}")
        return
    out = []
    summary = {}
    order = sys.argv[2:]
    rank = lambda s: (order.index(s) if s in order else len(order), s)
    for scenario in sorted(runs, key=rank):
        servers = sorted(runs[scenario], key=lambda s: SERVER_ORDER.index(s) if s in SERVER_ORDER else 9)
        metrics = S1 if scenario.startswith("s1") else MSG
        out.append(f"\n### {scenario}\n")
        out.append("| figure | " + " | ".join(f"{s} (n={len(runs[scenario][s])})" for s in servers) + " |")
        out.append("|---|" + "---|" * len(servers))
        medians = {}
        for label, path, scale, _better in metrics:
            row = []
            for s in servers:
                vals = [get(r, path) for r in runs[scenario][s]]
                vals = [v * scale for v in vals if v is not None]
                m = statistics.median(vals) if vals else None
                medians.setdefault(s, {})[label] = m
                row.append(m)
            base = medians.get("roomcast", {}).get(label)
            cells = []
            for s, m in zip(servers, row):
                cell = fmt(m)
                if s != "roomcast" and base and m is not None and base != 0:
                    cell += f" ({m / base:.2f}×)"
                cells.append(cell)
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        warnings = []
        for s in servers:
            # Only the phase the scenario's figures come from counts.
            phase = "connect" if scenario.startswith("s1") else "publish"
            sat = sum(1 for r in runs[scenario][s]
                      if (get(r, ("loadgen", f"cpu_util_{phase}")) or 0) > 0.9)
            busy = sum(1 for r in runs[scenario][s]
                       if (get(r, ("machine", f"other_cpu_util_{phase}")) or 0) > 0.1)
            failed = sum(get(r, ("connections", "failed")) or 0 for r in runs[scenario][s])
            if sat:
                warnings.append(f"{s}: load generator over 90% of its core in {sat} run(s)")
            if busy:
                warnings.append(f"{s}: other processes used >10% of a core in {busy} run(s)")
            if failed:
                warnings.append(f"{s}: {failed} failed connection(s) over all rounds")
            errors = {}
            for r in runs[scenario][s]:
                for code, n in (get(r, ("messages", "server_errors")) or {}).items():
                    errors[code] = errors.get(code, 0) + n
            if errors:
                warnings.append(f"{s}: server error events {errors}")
        for w in warnings:
            out.append(f"\n> ! {w}")
        summary[scenario] = medians
    # S2's "highest rate with 0 loss and p99 <= 50 ms" over the s2-<rate> steps run.
    steps = sorted((k for k in summary if k.startswith("s2-") and k.endswith("k")),
                   key=lambda k: int(k[3:-1]))
    if steps:
        servers = sorted({s for k in steps for s in summary[k]},
                         key=lambda s: SERVER_ORDER.index(s) if s in SERVER_ORDER else 9)
        out.append("\n### s2: highest step with 0 loss and p99 ≤ 50 ms (medians)\n")
        out.append("| " + " | ".join(servers) + " |")
        out.append("|" + "---|" * len(servers))
        cells = []
        for srv in servers:
            best = "none"
            for k in steps:
                m = summary[k].get(srv, {})
                if m.get("lost") == 0 and m.get("p99 ms") is not None and m["p99 ms"] <= 50:
                    best = f"{k[3:-1]}k/s"
            top = steps[-1][3:-1]
            if best == f"{top}k/s":
                best = f"≥ {best} (top step run)"
            cells.append(best)
        out.append("| " + " | ".join(cells) + " |")
    if not no_headline:
        out.extend(headline(summary))
    text = "\n".join(out)
    print(text)
    (root / "summary.md").write_text(text + "\n")
    (root / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
