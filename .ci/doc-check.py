#!/usr/bin/env python3
"""Lists every public declaration in the given folders (and every case of a
public enum) that has no `///` doc comment, and exits 1 if there is any."""
import os
import re
import sys

DECLARATION = re.compile(r"^(\s*)(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|open)\s+)(?:[\w()]+\s+)*?"
                         r"(class|struct|enum|protocol|actor|func|var|let|init|typealias|subscript|case|associatedtype)\b")
PUBLIC_ENUM = re.compile(r"^(\s*)(?:@\w+\s+)*public\s+(?:indirect\s+)?enum\b")
CASE = re.compile(r"^\s*case\s+[a-zA-Z_]")


def documented(lines, index):
    """Whether the declaration at `index` has a `///` comment above it
    (attributes and blank-free attribute lines may sit in between)."""
    index -= 1
    while index >= 0 and lines[index].strip().startswith("@"):
        index -= 1
    return index >= 0 and lines[index].strip().startswith("///")


def check(path):
    lines = open(path).read().splitlines()
    missing = []
    enum_indent = None
    for index, line in enumerate(lines):
        if enum_indent is not None and line.strip() == "}" and len(line) - len(line.lstrip()) == enum_indent:
            enum_indent = None
        enum = PUBLIC_ENUM.match(line)
        if enum:
            enum_indent = len(enum.group(1))
        is_public = DECLARATION.match(line)
        is_enum_case = (enum_indent is not None and CASE.match(line)
                        and len(line) - len(line.lstrip()) == enum_indent + 4)
        if (is_public or is_enum_case) and not documented(lines, index):
            missing.append((index + 1, line.strip()))
    return missing


def main():
    total = 0
    for root in sys.argv[1:]:
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                if not name.endswith(".swift"):
                    continue
                path = os.path.join(folder, name)
                for number, text in check(path):
                    print(f"{path}:{number}: undocumented: {text}")
                    total += 1
    print(f"{total} public declarations without a doc comment")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
