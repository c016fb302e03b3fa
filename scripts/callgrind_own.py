#!/usr/bin/env python3
"""The monitor's own instructions per request, from callgrind out files
(one per thread, `--separate-threads=yes`), as issue 20 measures it: the
self cost of every function of `starpunk::monitoring`, `starpunk_perf` and
`quanta`, divided by the requests.

Usage: callgrind_own.py REQUESTS FILE...

Threads are reported apart: the ticker's (the file holds a `::tick`
function) is time-driven, not per request, so it is shown on its own line.
With line tables in the build (CARGO_PROFILE_RELEASE_DEBUG=
line-tables-only), each function's cost is also split by the source file
of its instructions: code inlined from a caller's closure (the handler,
the statement run inside `around_query`) keeps its own file, so the part
that is the application's, not the monitor's, can be told apart.
"""
import collections
import re
import sys

OWN = re.compile(r"starpunk::monitoring|starpunk_perf|quanta")
APP = re.compile(r"shell/src/(db|web|app|http)/|/rusqlite-|/rouille-|/hyper-|/tokio-")


def parse(path):
    tab = {"file": {}, "fn": {}}

    def resolve(kind, v):
        m = re.match(r"\((\d+)\)(?: (.*))?$", v)
        if not m:
            return v
        if m.group(2) is not None:
            tab[kind][m.group(1)] = m.group(2)
        return tab[kind].get(m.group(1), v)

    cost = collections.Counter()
    fl = fn = cur = None
    skip = False
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        key, _, val = line.partition("=")
        if key == "fl":
            fl = cur = resolve("file", val)
        elif key in ("fi", "fe"):
            cur = resolve("file", val)
        elif key == "fn":
            fn = resolve("fn", val)
            cur = fl
        elif key in ("cfl", "cfi"):
            resolve("file", val)
        elif key == "cfn":
            resolve("fn", val)
        elif key == "calls":
            skip = True  # the next cost line is the call's inclusive cost
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                if skip:
                    skip = False
                    continue
                cost[(fn, cur)] += int(parts[1])
    return cost


def main():
    n = int(sys.argv[1])
    threads = {"request threads": collections.Counter(), "ticker": collections.Counter()}
    total = 0
    for path in sys.argv[2:]:
        cost = parse(path)
        total += sum(cost.values())
        ticker = any(fn and fn.endswith("::tick") for fn, _ in cost)
        threads["ticker" if ticker else "request threads"].update(cost)
    for name, cost in threads.items():
        byfn = collections.Counter()
        app = collections.Counter()
        for (fn, f), c in cost.items():
            if fn and OWN.search(fn):
                byfn[fn] += c
                if f and APP.search(f):
                    app[fn] += c
        own = sum(byfn.values())
        inlined = sum(app.values())
        print(f"## {name}: the monitor's own instructions per request: {own / n:.0f}"
              + (f" (of which inlined application code {inlined / n:.0f})" if inlined else ""))
        for fn, c in byfn.most_common():
            if c / n < 1:
                break
            extra = f"   (application code inlined: {app[fn] / n:.1f})" if app[fn] / n >= 1 else ""
            print(f"{c / n:9.1f}  {fn}{extra}")
    print(f"# all instructions per request, every thread: {total / n:.0f}")


main()
