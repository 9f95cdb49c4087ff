#!/usr/bin/env python3
"""Lists the longest C++ function bodies under src/ (a measurement, not a check).

A function is a definition whose signature starts at an indentation of at most two
spaces (free functions, and members defined inside a struct such as Pass) and whose
line ending in `{` may come after a wrapped parameter list; its length runs from the
signature's first line to the matching `}`.
Braces in strings and comments are not special-cased: good enough to rank.

Usage: tests/tools/longest_functions.py [DIR] [N]     (default: src 15)
"""

import pathlib
import re
import sys

SKIP = re.compile(r"^\s*(if|for|while|switch|namespace|struct|class|enum|union|extern|do|else|"
                  r"try|catch)\b")


def functions(path):
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip(" "))
        if (line.rstrip().endswith("{") and not SKIP.match(line)
                and "=" not in line.split("(")[0]):
            # The signature may start on earlier lines; take the name from the nearest "(".
            start = i
            sig = line
            while "(" not in sig and start > 0 and lines[start - 1].strip():
                start -= 1
                sig = lines[start] + " " + sig
            m = re.search(r"([\w:~<>]+)\s*\(", sig)
            first = lines[start]
            ok = len(first) - len(first.lstrip(" ")) <= 2 and not SKIP.match(first) and "=" not in first.split("(")[0] and not first.lstrip().startswith(("}", "//", "return"))
            if m and ")" in sig and ok:
                depth = 0
                for j in range(i, len(lines)):
                    depth += lines[j].count("{") - lines[j].count("}")
                    if depth <= 0:
                        yield m.group(1), start + 1, j - start + 1
                        break
                i += 1
                continue
        i += 1


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    rows = []
    for p in sorted(root.rglob("*.cc")):
        for name, line, length in functions(p):
            rows.append((length, f"{p}:{line}", name))
    rows.sort(reverse=True)
    for length, where, name in rows[:n]:
        print(f"{length:5d}  {name:45s} {where}")


if __name__ == "__main__":
    main()
