#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Import cycles between source files, from the object files' symbols.

usage: check-cycles.py DIR...

Every .o below each DIR is a node (named by its source file); file A
depends on file B when A uses a symbol B defines.  A group of files that
depend on each other in a circle fails the check; it is printed with
the symbols that close it.
"""
import os
import subprocess
import sys


def objects(dirs):
    for d in dirs:
        for root, _, files in os.walk(d):
            for f in sorted(files):
                if f.endswith(".o"):
                    yield os.path.join(root, f)


def symbols(objs):
    """{object: (defs, uses)} from one nm run over every object (one
    process, not one per file: the check stays quick on a loaded machine)."""
    out = subprocess.run(["nm", "-A", "-P"] + objs, capture_output=True,
                         text=True, check=True).stdout
    table = {o: (set(), set()) for o in objs}
    for line in out.splitlines():
        obj, sep, rest = line.partition(": ")
        if not sep or obj not in table:
            continue
        p = rest.split()
        if len(p) < 2:
            continue
        defs, uses = table[obj]
        if p[1] in "TDBR":
            defs.add(p[0])
        elif p[1] == "U":
            uses.add(p[0])
    return table


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv):
    dirs = list(argv)
    if not dirs:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    defs, uses = {}, {}
    objs = list(objects(dirs))
    table = symbols(objs) if objs else {}
    for o in objs:
        name = os.path.basename(o)[:-len(".o")]
        d, u = table[o]
        uses.setdefault(name, set()).update(u)
        for s in d:
            defs[s] = name
    if not uses:
        print("no object files under %s" % " ".join(dirs), file=sys.stderr)
        return 2
    graph = {n: {defs[s] for s in u if s in defs and defs[s] != n}
             for n, u in uses.items()}
    bad = 0
    for comp in sccs(graph):
        print("CYCLE: %s" % " <-> ".join(comp))
        for a in comp:
            for b in comp:
                if b in graph[a]:
                    syms = sorted(s for s in uses[a] if defs.get(s) == b)
                    print("    %s uses %s: %s" % (a, b, ", ".join(syms)))
        bad += 1
    print("%d files, %d cycle%s" % (len(graph), bad, "" if bad == 1 else "s"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
