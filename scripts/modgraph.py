#!/usr/bin/env python3
"""Print the import graph between the crate's modules and its cycles.

Usage: python3 scripts/modgraph.py [--depth N] [--dot]

Every `crate::a::b` and `super::x` path in non-test code of src/ (comments and `#[cfg(test)]`
items left out) is an edge from the module of the file to the module it names, cut at DEPTH
path segments (default 1: the modules under `src/lib.rs`; 2 also shows edges between sibling
submodules). Exits 1 when the graph has a cycle, so CI can keep it acyclic.
"""
import argparse
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)")
USE_GROUP = re.compile(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def module_of(path):
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return [] if parts == ["lib"] else ["main"]
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts


def code_lines(text):
    """The file's text without comments and without test-only items."""
    out = []
    skip_depth = None
    depth = 0
    pending_test = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        line = re.sub(r"//.*", "", line)
        if skip_depth is None and re.match(r"#\[cfg\(test\)\]", stripped):
            pending_test = True
            continue
        opens, closes = line.count("{"), line.count("}")
        if pending_test:
            if opens:
                skip_depth = depth
                pending_test = False
            elif stripped.endswith(";"):
                pending_test = False
                continue
        if skip_depth is None:
            out.append(line)
        depth += opens - closes
        if skip_depth is not None and depth <= skip_depth:
            skip_depth = None
    return "\n".join(out)


def targets(module, text):
    found = []
    for m in USE_GROUP.finditer(text):
        base = m.group(2).split("::")[1:]
        for item in re.split(r",", m.group(3)):
            item = item.strip().split(" as ")[0].strip()
            if not item or not re.match(r"[a-z_]", item) or item == "self":
                found.append((m.group(1), base))
            else:
                found.append((m.group(1), base + item.split("::")[:1]))
    for m in PATH.finditer(text):
        found.append((m.group(1), m.group(2).split("::")[1:]))
    for root, segs in found:
        if root == "super":
            yield module[:-1] + segs
        else:
            yield segs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--dot", action="store_true")
    args = ap.parse_args()
    modules = {tuple(module_of(p)) for p in SRC.rglob("*.rs")}
    edges = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module == ["main"]:
            continue
        text = code_lines(path.read_text())
        for target in targets(module, text):
            # keep only the part of the path that names a module
            while target and tuple(target) not in modules:
                target = target[:-1]
            a, b = tuple(module[: args.depth]), tuple(target[: args.depth])
            if not a or not b or a == b:
                continue
            # at depth > 1, only edges between siblings say something new
            if args.depth > 1 and a[:-1] != b[:-1]:
                continue
            edges.setdefault(a, set()).add(b)
    name = lambda m: "::".join(m)
    if args.dot:
        print("digraph modules {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{name(a)}" -> "{name(b)}";')
        print("}")
    else:
        for a in sorted(edges):
            print(f"{name(a)} -> {', '.join(name(b) for b in sorted(edges[a]))}")
    # cycles: strongly connected components with more than one module
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
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
                sccs.append(comp)

    for v in sorted(set(edges) | {b for bs in edges.values() for b in bs}):
        if v not in index:
            strong(v)
    for comp in sccs:
        print("cycle: " + " <-> ".join(sorted(name(m) for m in comp)), file=sys.stderr)
    if not sccs:
        print("no cycles", file=sys.stderr)
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
