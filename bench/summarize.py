#!/usr/bin/env python3
"""Summarise bench/run.sh samples: median/min/max per figure, ratios
against the targets, a JSON file and a printed table.

usage: summarize.py RAW.csv META.txt OUT.json
"""
import csv
import json
import statistics
import sys
from collections import defaultdict


def main():
    raw, meta_path, out = sys.argv[1:4]
    samples = defaultdict(list)
    with open(raw) as f:
        for row in csv.DictReader(f):
            try:
                v = float(row["value"])
            except ValueError:
                continue
            samples[(row["workload"], row["metric"], row["pair"])].append(v)
    meta = {}
    with open(meta_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v

    figures = {}
    for (wl, metric, pair), vals in sorted(samples.items()):
        figures.setdefault(wl, {}).setdefault(metric, {})[pair] = {
            "median": statistics.median(vals),
            "min": min(vals),
            "max": max(vals),
            "n": len(vals),
            "samples": vals,
        }

    def med(wl, metric, pair):
        try:
            return figures[wl][metric][pair]["median"]
        except KeyError:
            return None

    # (name, workload, metric, reference pair, op, bound): met when
    # tlsplex/reference op bound (both medians of this run), or, with no
    # reference pair, when the tlsplex median itself op bound.
    par = sorted(w for w in figures if w.startswith("bulk") and w != "bulk1")
    targets = [
        ("ping beside bulk, p99", "ping_bulk", "p99_us", "stunnel", "<=", 1.0),
        ("ping beside bulk, p50", "ping_bulk", "p50_us", "stunnel", "<=", 2.0),
        ("ping beside bulk, bulk MB/s", "ping_bulk", "bulk_mbps", "stunnel", ">=", 1.0),
        ("rr requests/s", "rr", "req_per_s", "stunnel", ">=", 2.0),
        ("rr requests/s", "rr", "req_per_s", "direct", ">=", 0.3),
        ("rr p99", "rr", "p99_us", "stunnel", "<=", 1.0),
        ("mixed p99", "mixed", "p99_us", "stunnel", "<=", 1.0),
    ]
    for wl in ["bulk1"] + (par or ["bulk8"]):
        for d in ("up", "down"):
            targets.append((f"{wl} {d} throughput", wl, f"{d}_MBps", "stunnel", ">=", 1.5))
    for d in ("up", "down"):
        targets.append((f"bulk1 {d} CPU per GB", "bulk1", f"{d}_cpu_s_per_GB", "stunnel", "<=", 0.6))
    targets.append(("new connections/s", "cps", "conn_per_s", "stunnel", ">=", 8.0))
    for wl in sorted((w for w in figures if w.startswith("mem_")), key=lambda w: int(w[4:])) or ["mem_*"]:
        targets.append((f"KiB per idle conn, N={wl[4:]}", wl, "KiB_per_conn", None, "<=", 4.0))
    targets.append(("ping p99, idle link", "ping", "p99_us", "stunnel", "<=", 1.0))

    ratios = []
    for name, wl, metric, ref, op, bound in targets:
        t = med(wl, metric, "tlsplex")
        r = med(wl, metric, ref) if ref else None
        if t is None or (ref and not r):
            value = None
        else:
            value = t / r if ref else t
        ratios.append({
            "target": name, "workload": wl, "metric": metric,
            "reference": ref, "reference_median": r, "tlsplex_median": t,
            "ratio": round(value, 3) if value is not None and ref else None,
            "ratio_means": f"tlsplex/{ref}" if ref else None,
            "required": f"{op} {bound:g}" + ("" if ref else " (tlsplex median)"),
            "met": None if value is None else (value <= bound if op == "<=" else value >= bound),
        })

    with open(out, "w") as f:
        json.dump({"meta": meta, "figures": figures, "ratios": ratios}, f, indent=1)

    pairs = ["direct", "stunnel", "tlsplex"]
    print(f"\n{'workload':<10} {'metric':<26}" + "".join(f" {p + ' med [min-max]':>30}" for p in pairs))
    for wl in figures:
        for metric in figures[wl]:
            cells = []
            for p in pairs:
                c = figures[wl][metric].get(p)
                cells.append(f"{c['median']:.1f} [{c['min']:.1f}-{c['max']:.1f}]" if c else "-")
            print(f"{wl:<10} {metric:<26}" + "".join(f" {c:>30}" for c in cells))

    def num(v):
        return "-" if v is None else f"{v:.1f}"

    print(f"\n{'target':<30} {'metric':<25} {'vs':<8} {'reference':>10} {'tlsplex':>10} "
          f"{'ratio':>7} {'need':>7}  met")
    for r in ratios:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        need = r["required"].split(" (")[0].replace(" ", "") + ("x" if r["reference"] else "")
        met = "n/a" if r["met"] is None else ("yes" if r["met"] else "NO")
        print(f"{r['target']:<30} {r['workload'] + ' ' + r['metric']:<25} {r['reference'] or 'value':<8} "
              f"{num(r['reference_median']):>10} {num(r['tlsplex_median']):>10} {ratio:>7} {need:>7}  {met}")
    known = [r for r in ratios if r["met"] is not None]
    print(f"met {sum(r['met'] for r in known)} of {len(known)} targets with data"
          f" ({len(ratios) - len(known)} without data); ratio = tlsplex / reference pair,"
          f" 'value' = tlsplex's own median")
    print(f"\n{meta.get('note', '')}\nload average start {meta.get('loadavg_start')}, end {meta.get('loadavg_end')}; "
          f"duration {meta.get('duration_s')} s; results in {out}")


if __name__ == "__main__":
    main()
