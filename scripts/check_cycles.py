#!/usr/bin/env python3
"""Fails when files of a crate import each other in a cycle.

For every .rs file under the crate roots below, collects file-to-file edges from `use crate::...`,
`use super::...`, `use self::...` and from `crate::x::` / `super::x::` paths written in code
(test modules excluded: a test may reach anywhere). A path is resolved to the file that defines
the item, following `pub use` re-exports, so `super::ModelConfig` counts as a dependency on
config.rs rather than on the runtime/mod.rs facade. Any strongly connected component of more
than one file is printed and the exit status is 1.

Usage: scripts/check_cycles.py [crate_src_dir ...]   (default: engine/core/src engine/lm/src engine/eval/src src)
"""

import re
import sys
from pathlib import Path

DEFAULT_ROOTS = ["engine/core/src", "engine/lm/src", "engine/eval/src", "src"]
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# `crate::a::b`, `super::super::a`, `self::a` written in code outside `use` statements.
INLINE_PATH = re.compile(rf"\b(?:crate|super|self)(?:::{IDENT})+")
USE_STMT = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);")


def strip_comments_and_strings(text):
    """Source with comments removed and string/char literals emptied (braces inside them would
    otherwise confuse block matching, and doc comments name paths that are not dependencies)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            out.append('""')
            i = n if end < 0 else end + 1 + len(hashes)
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'); otherwise a lifetime such as 'a.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_modules(code):
    """Removes `mod tests { ... }` and `#[cfg(test)] mod x { ... }` blocks."""
    pattern = re.compile(rf"(#\[cfg\(test\)\]\s*)?(pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*\{{")
    pos = 0
    while True:
        m = pattern.search(code, pos)
        if not m:
            return code
        if not (m.group(1) or m.group(3) == "tests"):
            pos = m.end()
            continue
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        code = code[: m.start()] + code[i:]
        pos = m.start()


def expand_use_tree(tree):
    """`a::{b, c::{d, self}}` -> [[a, b], [a, c, d], [a, c]] (aliases and globs dropped)."""
    tree = re.sub(r"\s+", "", re.sub(rf"\s+as\s+{IDENT}", "", tree))
    paths = []

    def walk(prefix, s):
        depth, start, parts = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            if "{" in part:
                head, _, rest = part.partition("{")
                segs = [x for x in head.split("::") if x]
                walk(prefix + segs, rest[: rest.rfind("}")])
            else:
                segs = [x for x in part.split("::") if x]
                if segs and segs[-1] == "*":
                    segs = segs[:-1]
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                paths.append(prefix + segs)

    walk([], tree)
    return paths


class Crate:
    def __init__(self, root):
        self.root = Path(root)
        self.files = {}  # module path (tuple) -> file
        for f in sorted(self.root.rglob("*.rs")):
            rel = f.relative_to(self.root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            self.files[tuple(parts)] = f
        self.module_of = {f: m for m, f in self.files.items()}
        self.code = {f: strip_test_modules(strip_comments_and_strings(f.read_text())) for f in self.files.values()}
        # Re-exports: (module, name) -> absolute path.
        self.reexports = {}
        for f, code in self.code.items():
            module = self.module_of[f]
            for m in USE_STMT.finditer(code):
                if not m.group(1):
                    continue
                for raw in expand_use_tree(m.group(2)):
                    path = self.absolute(module, raw)
                    if path:
                        self.reexports[(module, path[-1])] = path

    def absolute(self, module, segs):
        """Path relative to `module` -> absolute module path within this crate, or None."""
        if not segs:
            return None
        segs = list(segs)
        if segs[0] == "crate":
            return segs[1:]
        base = list(module)
        if segs[0] in ("super", "self"):
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    if not base:
                        return None
                    base.pop()
            return base + segs
        # Uniform paths: a child module of this one.
        if tuple(base + [segs[0]]) in self.files:
            return base + segs
        return None

    def resolve(self, path, depth=0):
        """Absolute path -> the file defining its last module or re-exported item."""
        if path is None or depth > 8:
            return None
        k = len(path)
        while k >= 0 and tuple(path[:k]) not in self.files:
            k -= 1
        if k < 0:
            return None
        module = tuple(path[:k])
        if k < len(path):
            target = self.reexports.get((module, path[k]))
            if target and target != list(path[: k + 1]):
                return self.resolve(target + list(path[k + 1 :]), depth + 1)
        return self.files[module]

    def edges(self):
        out = {f: set() for f in self.files.values()}
        for f, code in self.code.items():
            module = self.module_of[f]
            raw_paths = []
            for m in USE_STMT.finditer(code):
                raw_paths += expand_use_tree(m.group(2))
            body = USE_STMT.sub(" ", code)
            raw_paths += [p.split("::") for p in INLINE_PATH.findall(body)]
            for raw in raw_paths:
                target = self.resolve(self.absolute(module, raw))
                if target and target != f:
                    out[f].add(target)
        return out


def strongly_connected(graph):
    """Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                comps.append(comp)
    return comps


def main(argv):
    roots = argv[1:] or DEFAULT_ROOTS
    repo = Path(__file__).resolve().parent.parent
    failed = False
    for root in roots:
        path = Path(root) if Path(root).is_absolute() else repo / root
        if not path.is_dir():
            print(f"check_cycles: {path} is not a directory", file=sys.stderr)
            return 2
        crate = Crate(path)
        graph = crate.edges()
        n_edges = sum(len(v) for v in graph.values())
        cycles = [c for c in strongly_connected(graph) if len(c) > 1]
        for comp in cycles:
            failed = True
            names = sorted(str(f.relative_to(path)) for f in comp)
            print(f"import cycle in {root}: {', '.join(names)}")
            members = set(comp)
            for f in sorted(comp):
                for t in sorted(graph[f] & members):
                    print(f"    {f.relative_to(path)} -> {t.relative_to(path)}")
        if not cycles:
            print(f"{root}: {len(graph)} files, {n_edges} edges, no import cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
