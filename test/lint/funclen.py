#!/usr/bin/env python3
"""Function lengths in crisp's C sources (lines from the opening to the
closing brace of each function body; issue 7's targets: median <= 12,
p90 <= 35; `make lint`, a step of test/run, holds none over 60).

    test/lint/funclen.py [--max N] [--median N] [--p90 N] [--top K] [DIR...]
                                                        (default: src)

Prints the median, p90 and maximum, and the longest functions; exits 1 when
one is over --max (default 80), or the median or p90 over theirs (when
given)."""
import argparse
import os
import re
import statistics
import sys

FUNC_START = re.compile(r"^[A-Za-z_][^;=]*\)\s*$")  # a definition's last header line


def functions(path):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i] == "{" and i > 0 and FUNC_START.match(lines[i - 1].strip() or "x;"):
            # the header may span lines: find its first line for the name
            j = i - 1
            while j > 0 and not re.match(r"^[A-Za-z_]", lines[j]):
                j -= 1
            m = re.search(r"(\w+)\s*\(", " ".join(lines[j:i]))
            end = i + 1
            while end < len(lines) and lines[end] != "}":
                end += 1
            yield (m.group(1) if m else "?", path, j + 1, end - i + 1)
            i = end
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=80)
    ap.add_argument("--median", type=float, help="the median's limit")
    ap.add_argument("--p90", type=int, help="the 90th percentile's limit")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("dirs", nargs="*", default=["src"])
    a = ap.parse_args()
    funcs = []
    for d in a.dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith(".c"):
                    funcs.extend(functions(os.path.join(root, f)))
    if not funcs:
        print("funclen: no functions found")
        return 1
    n = sorted(x[3] for x in funcs)
    p90 = n[min(len(n) - 1, int(len(n) * 0.9))]
    print("funclen: %d functions, median %g, p90 %d, max %d lines" %
          (len(n), statistics.median(n), p90, n[-1]))
    for name, path, line, length in sorted(funcs, key=lambda x: -x[3])[:a.top]:
        print("  %4d  %s:%d %s" % (length, path, line, name))
    rc = 0
    over = [x for x in funcs if x[3] > a.max]
    if over:
        print("funclen: %d function(s) over %d lines" % (len(over), a.max))
        rc = 1
    if a.median is not None and statistics.median(n) > a.median:
        print("funclen: the median is over %g lines" % a.median)
        rc = 1
    if a.p90 is not None and p90 > a.p90:
        print("funclen: the p90 is over %d lines" % a.p90)
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
