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

    # (name, workload, metric, "higher"|"lower" is better, required ratio)
    # ratio = tlsplex/stunnel when higher is better, stunnel/tlsplex otherwise
    par = [w for w in figures if w.startswith("bulk") and w != "bulk1"]
    targets = []
    for wl in ["bulk1"] + par:
        for d in ("up", "down"):
            targets.append((f"{wl} {d} throughput", wl, f"{d}_MBps", "higher", 2.0))
    targets.append(("new connections/s", "cps", "conn_per_s", "higher", 5.0))
    targets.append(("ping-pong p99, idle link", "ping", "p99_us", "lower", 1.0))
    targets.append(("ping-pong p99, with bulk", "ping_bulk", "p99_us", "lower", 1.0))
    for wl in sorted(w for w in figures if w.startswith("mem_")):
        targets.append((f"memory per idle conn, N={wl[4:]}", wl, "KiB_per_conn", "lower", 20.0))
    ratios = []
    for name, wl, metric, better, need in targets:
        s, t = med(wl, metric, "stunnel"), med(wl, metric, "tlsplex")
        if s is None or t is None or s == 0 or t == 0:
            continue
        r = t / s if better == "higher" else s / t
        ratios.append({
            "target": name, "workload": wl, "metric": metric,
            "stunnel_median": s, "tlsplex_median": t,
            "ratio": round(r, 3), "required": need, "met": r >= need,
            "ratio_means": "tlsplex/stunnel" if better == "higher" else "stunnel/tlsplex",
        })

    with open(out, "w") as f:
        json.dump({"meta": meta, "figures": figures, "ratios": ratios}, f, indent=1)

    pairs = ["direct", "stunnel", "tlsplex"]
    print(f"\n{'workload':<10} {'metric':<20}" + "".join(f" {p + ' med [min-max]':>30}" for p in pairs))
    for wl in figures:
        for metric in figures[wl]:
            cells = []
            for p in pairs:
                c = figures[wl][metric].get(p)
                cells.append(f"{c['median']:.1f} [{c['min']:.1f}-{c['max']:.1f}]" if c else "-")
            print(f"{wl:<10} {metric:<20}" + "".join(f" {c:>30}" for c in cells))
    print(f"\n{'target':<36} {'stunnel':>10} {'tlsplex':>10} {'ratio':>8} {'need':>6}  met")
    for r in ratios:
        print(f"{r['target']:<36} {r['stunnel_median']:>10.1f} {r['tlsplex_median']:>10.1f} "
              f"{r['ratio']:>8.2f} {r['required']:>6.1f}  {'yes' if r['met'] else 'NO'}")
    print(f"\n{meta.get('note', '')}\nload average start {meta.get('loadavg_start')}, end {meta.get('loadavg_end')}; "
          f"duration {meta.get('duration_s')} s; results in {out}")


if __name__ == "__main__":
    main()
