#!/usr/bin/env python3
"""Fails when an include crosses the layering the build declares.

The layers and what each may use are read from CMakeLists.txt (the DEPS of each
capstan_layer(...) call, closed transitively), so the rule and the link lines are one
thing: a file of layer L (src/L/, include/capstan/L/, tests/unit/L/,
tests/integration/L/) may include capstan/M/... or unit/M/... only when M is L or a
layer L's target depends on. A lower layer including a higher one, a sideways include
between layers that do not depend on each other, or an include the CMake target
dependencies do not cover all fail. src/main.cc and src/run.cc may include anything.

Usage: check_layers.py <source dir>     (ctest runs it as `layering`, label unit)
"""

import pathlib
import re
import sys

LAYER_CALL = re.compile(r"capstan_layer\((\w+)((?:\s+DEPS)?[^)]*)\)", re.S)
INCLUDE = re.compile(r'^\s*#\s*include\s+"(capstan|unit|integration)/(\w+)/[^"]+"', re.M)


def layer_graph(cmake_text):
    deps = {}
    for name, rest in LAYER_CALL.findall(cmake_text):
        deps[name] = set(re.findall(r"\bcapstan_(\w+)\b", rest))
    closure = {}

    def close(layer, seen=()):
        if layer in closure:
            return closure[layer]
        if layer in seen:
            raise SystemExit(f"layer cycle through {layer}")
        out = set()
        for d in deps.get(layer, ()):
            out |= {d} | close(d, seen + (layer,))
        closure[layer] = out
        return out

    for layer in deps:
        close(layer)
    return deps, closure


def files_of(root, layer):
    for base in (f"src/{layer}", f"include/capstan/{layer}", f"tests/unit/{layer}",
                 f"tests/integration/{layer}"):
        d = root / base
        if d.is_dir():
            yield from sorted(p for p in d.rglob("*") if p.suffix in (".h", ".cc"))


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    deps, closure = layer_graph((root / "CMakeLists.txt").read_text())
    problems = []
    used = {layer: set() for layer in deps}
    for layer in sorted(deps):
        allowed = closure[layer] | {layer}
        for path in files_of(root, layer):
            for m in INCLUDE.finditer(path.read_text()):
                target = m.group(2)
                if target not in deps:
                    continue  # generated/, testdata helpers, ...
                used[layer].add(target)
                if target not in allowed:
                    line = path.read_text()[: m.start()].count("\n") + 1
                    problems.append(
                        f"{path.relative_to(root)}:{line}: layer {layer} includes "
                        f"{m.group(1)}/{target}/ but capstan_{layer} does not depend on "
                        f"capstan_{target} (allowed: {', '.join(sorted(allowed))})")
    for p in problems:
        print(p)
    # Informational: a direct dependency no include of the layer needs.
    for layer in sorted(deps):
        needed = set()
        for u in used[layer] - {layer}:
            needed |= {u} | closure[u]
        unused = sorted(d for d in deps[layer] if d not in needed and d in deps)
        if unused:
            print(f"note: capstan_{layer} depends on {', '.join('capstan_' + u for u in unused)}"
                  " without including it")
    if problems:
        print(f"{len(problems)} include(s) break the layering", file=sys.stderr)
        return 1
    print(f"layering: {sum(1 for l in deps for _ in files_of(root, l))} files in "
          f"{len(deps)} layers follow CMakeLists.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
