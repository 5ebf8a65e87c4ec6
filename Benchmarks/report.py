#!/usr/bin/env python3
"""Turns the samples of Benchmarks/run.sh into results: medians, per-pair
ratios (swift-evpl over the reference, or the reference over swift-evpl for
costs; above 1 means swift-evpl does better),
a markdown table, a JSON file and a PNG chart of the ratios."""

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess


def read_samples(path):
    samples = {}
    with open(path) as handle:
        for line in handle:
            key, value = line.rstrip("\n").split("\t")
            samples.setdefault(key, []).append(float(value))
    return samples


def read_pairs(path):
    fields = ["group", "scenario", "unit", "subject", "subject_label", "reference", "reference_label"]
    with open(path) as handle:
        return [dict(zip(fields, line.rstrip("\n").split("\t"))) for line in handle if line.strip()]


# Units where fewer is better: their ratio is the reference's over swift-evpl's,
# so that above 1 still means swift-evpl does better.
COST_UNITS = {"instructions per I/O", "µs at p50", "µs at p99", "server CPU µs per request"}


def median(values):
    measured = [value for value in values if not math.isnan(value)]
    return statistics.median(measured) if measured else float("nan")


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        kib = int(handle.readline().split()[1])
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(kib / 1024 / 1024),
        "kernel": platform.release(),
        "swift": subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if subprocess.run(["which", "swift"], capture_output=True).returncode == 0 else "unknown",
    }


def number(value, unit):
    if math.isnan(value):
        return "failed"
    if unit == "Gbit/s":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def value_text(value, unit, valid, runs):
    """A median as the table shows it: the null engine row in nanoseconds per
    I/O, and a note when some runs of the tool failed."""
    if math.isnan(value) or value == 0:
        return "failed"
    text = f"{1e9 / value:.0f} ns" if unit == "ns per I/O" else number(value, unit)
    return text if valid == runs else f"{text} ({valid} of {runs} runs)"


def markdown(report):
    lines = [
        f"Measured {report['date']} on {report['machine']['cpus']} × {report['machine']['cpu']}, "
        f"{report['machine']['memory_gib']} GiB, Linux {report['machine']['kernel']}; "
        f"medians of {report['runs']} alternating runs of {report['seconds']} s "
        f"per measurement. Reproduce: `{report['command']}`.",
        "",
        "| scenario | unit | swift-evpl | median | reference | median | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for pair in report["pairs"]:
        unit = "ns per I/O" if "null engine" in pair["scenario"] and pair["unit"] == "IOPS" else pair["unit"]
        subject = value_text(pair["subject_median"], unit, pair["subject_runs"], report["runs"])
        reference = value_text(pair["reference_median"], unit, pair["reference_runs"], report["runs"])
        ratio = "-" if math.isnan(pair["ratio"]) else f"{pair['ratio']:.2f}x"
        lines.append(f"| {pair['scenario']} | {unit} | {pair['subject_label']} | {subject} | "
                     f"{pair['reference_label']} | {reference} | {ratio} |")
    lines += ["", "Ratio: swift-evpl's throughput over the reference's (above 1.00x, swift-evpl is faster; "
              "for the null engine, the reference's ns per I/O over swift-evpl's; for instructions per I/O, "
              "the reference's count over swift-evpl's)."]
    return "\n".join(lines) + "\n"


def chart(report, path):
    try:
        import matplotlib
        import matplotlib.ticker
        matplotlib.use("Agg")
        import matplotlib.pyplot as plot
    except ImportError:
        return False
    pairs = [pair for pair in report["pairs"] if not math.isnan(pair["ratio"])]
    labels = [f"{pair['scenario']}: {pair['subject_label']} / {pair['reference_label']}" for pair in pairs]
    ratios = [pair["ratio"] for pair in pairs]
    figure, axes = plot.subplots(figsize=(12, 0.32 * len(pairs) + 1.5))
    colors = ["#2a7ab9" if ratio >= 1 else "#d0603a" for ratio in ratios]
    axes.barh(range(len(pairs)), ratios, color=colors)
    axes.set_yticks(range(len(pairs)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.25, 0.5, 1, 2, 4, 8]))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel("swift-evpl / reference (log scale; right of 1 = swift-evpl faster)")
    axes.set_title(f"swift-evpl vs reference tools, medians of {report['runs']} runs, {report['date']}")
    for index, ratio in enumerate(ratios):
        axes.text(ratio, index, f" {ratio:.2f}x", va="center", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default="latest", help="base name of the files written")
    arguments = parser.parse_args()

    samples = read_samples(arguments.samples)
    pairs = read_pairs(arguments.pairs)
    medians = {key: median(values) for key, values in samples.items()}
    valid = {key: sum(not math.isnan(value) for value in values) for key, values in samples.items()}
    for pair in pairs:
        pair["subject_median"] = medians.get(pair["subject"], float("nan"))
        pair["reference_median"] = medians.get(pair["reference"], float("nan"))
        pair["subject_runs"] = valid.get(pair["subject"], 0)
        pair["reference_runs"] = valid.get(pair["reference"], 0)
        if pair["unit"] in COST_UNITS:
            pair["ratio"] = pair["reference_median"] / pair["subject_median"] if pair["subject_median"] else float("nan")
        else:
            pair["ratio"] = pair["subject_median"] / pair["reference_median"] if pair["reference_median"] else float("nan")
    report = {
        "date": datetime.date.today().isoformat(),
        "command": arguments.command,
        "runs": arguments.runs,
        "seconds": arguments.seconds,
        "machine": machine(),
        "pairs": pairs,
        "samples": samples,
    }
    os.makedirs(arguments.out, exist_ok=True)
    table = markdown(report)
    base = os.path.join(arguments.out, arguments.name)
    with open(base + ".md", "w") as handle:
        handle.write(table)
    with open(base + ".json", "w") as handle:
        # NaN (a failed tool) is written as null.
        json.dump(json.loads(json.dumps(report).replace("NaN", "null")), handle, indent=1)
    chart_path = base.replace("latest", "ratios", 1) + ".png"
    has_chart = chart(report, chart_path)
    print(table)
    print(f"wrote {base}.md, {base}.json" + (f", {chart_path}" if has_chart else " (no chart: matplotlib missing)"))


if __name__ == "__main__":
    main()
