#!/usr/bin/env python3
"""Prints the line coverage of one module (Sources/Evpl, Sources/EvplTLS, Sources/EvplHTTP) per folder from the llvm-cov JSON
export that `swift test --enable-code-coverage` writes (its path comes from
`swift test --show-codecov-path`), then every `throw` no test reached."""
import bisect
import collections
import json
import os
import sys


def folder_of(path, root):
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)[:-1]
    # Backends/<name> and Net, Core, ... on their own.
    return "/".join(parts[:2] if parts[:1] == ["Backends"] else parts[:1]) or "."


def unreached_throws(entry):
    """The `throw` statements of a file that no test ran: the region that
    covers each `throw` keyword (found by its line and column among
    llvm-cov's segments) has a count of zero."""
    segments = [segment for segment in entry["segments"] if segment[3]]
    positions = [(segment[0], segment[1]) for segment in segments]
    with open(entry["filename"]) as source:
        text = source.read().splitlines()
    missed = []
    for number, line in enumerate(text, start=1):
        column = line.find("throw ")
        if column < 0 or line.lstrip().startswith("//"):
            continue
        covering = bisect.bisect_right(positions, (number, column + 1)) - 1
        if covering >= 0 and segments[covering][2] == 0:
            missed.append((number, line.strip()))
    return missed


def main():
    export, root = sys.argv[1], os.path.abspath(sys.argv[2])
    files = json.load(open(export))["data"][0]["files"]
    lines = collections.defaultdict(lambda: [0, 0])
    for entry in files:
        path = os.path.abspath(entry["filename"])
        if not path.startswith(root + os.sep):
            continue
        summary = entry["summary"]["lines"]
        totals = lines[folder_of(path, root)]
        totals[0] += summary["covered"]
        totals[1] += summary["count"]
    covered = sum(value[0] for value in lines.values())
    count = sum(value[1] for value in lines.values())
    print(f"| {os.path.relpath(root)} | lines | covered |")
    print("|---|---|---|")
    for folder in sorted(lines):
        done, total = lines[folder]
        print(f"| {folder} | {total} | {100 * done / max(total, 1):.1f}% |")
    print(f"| all | {count} | {100 * covered / max(count, 1):.1f}% |")
    missed = [(os.path.relpath(entry["filename"]), line, text) for entry in files
              if os.path.abspath(entry["filename"]).startswith(root + os.sep)
              for line, text in unreached_throws(entry)]
    print(f"\n`throw` sites no test reached: {len(missed)}")
    for path, line, text in missed:
        print(f"  {path}:{line}: {text}")


if __name__ == "__main__":
    main()
