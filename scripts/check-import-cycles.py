#!/usr/bin/env python3
"""Report source files that import each other, in every crate of the workspace.

    scripts/check-import-cycles.py                 # every workspace member
    scripts/check-import-cycles.py --crate NAME    # one package (name or directory), repeatable
    scripts/check-import-cycles.py -v              # also list each file's imports

Exit status: 0 when no cycle is found, 1 when one is, 2 on a usage error.

What is checked
---------------
Every target of every workspace member (the library, binaries, tests, benches, examples,
build script, and `[[bin]]`/`[[test]]`/... paths from Cargo.toml) is a crate root. From
each root the module tree is followed through `mod name;` declarations (`name.rs` or
`name/mod.rs`, as rustc finds them; `#[path]` attributes are not supported) and
inline `mod name { ... }` blocks. Each file is one node.

File A *imports* file B when code in A names, by a path, an item that lives in B:

- a `use` declaration, at any depth (`use crate::x::Y;`, `use super::{a, b::C};`,
  `use child::Z;`, globs `use super::*;`, re-exports `pub use ...`);
- a path in code whose first segment is `crate`, `$crate`, `self` or `super`, a child
  module declared in the same module, or a name that module imports with `use`
  (`crate::x::f()`, `super::T`, `child::f()`, `alias::g()`).

A path is resolved module by module. When it ends at an item of a module, the item is
looked up there: defined in that module (fn, struct, enum, union, trait, type, const,
static, mod, macro_rules) -> that module's file; brought in by a `use` of that module
(including private imports and glob imports) -> the import is followed to where the item
really lives. So `crate::Error`, re-exported by `lib.rs` from `error.rs`, is an import of
`error.rs`, not of `lib.rs`. A path naming a module itself is an import of that module's
file. Paths into other crates (std, dependencies) are ignored.

Not imports: declaring a child module (`mod x;`); method calls, field accesses and types
reached only through inference; comments, doc links and string literals.

Test code does not count: an item gated by `#[cfg(test)]` (or `#[cfg(all(test, ...))]`),
typically `#[cfg(test)] mod tests { use super::*; ... }` or `#[cfg(test)] mod tests;`,
is skipped whole, with the file it declares. A child test module importing its parent
is not a cycle we care about.

A *cycle* is two files that import each other (reported with the line of one import in
each direction), or a longer loop A -> B -> C -> A among files (one such loop is reported
per strongly connected group of files that is not already made of such pairs).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- lexing


def strip(src: str) -> str:
    """`src` with comments and string/char literals blanked (newlines kept)."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def ident_before(k: int) -> bool:
        return k > 0 and (src[k - 1].isalnum() or src[k - 1] == "_")

    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rbc" and not ident_before(i):
            # Raw strings r"..", r#".."#, br"..", cr"..", and b"..", c"..".
            m = re.compile(r'(?:b|c)?r(#*)"').match(src, i)
            if m:
                end = src.find('"' + m.group(1), m.end())
                end = n if end < 0 else end + 1 + len(m.group(1))
                blank(i, end)
                i = end
            elif src.startswith(('b"', 'c"'), i):
                i = skip_string(src, i + 1, blank)
            else:
                i += 1
        elif c == '"':
            i = skip_string(src, i, blank)
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime/label ('a).
            if i + 1 < n and src[i + 1] == "\\":
                j = i + 2
                while j < n and src[j] != "'":
                    j += 1
                blank(i, j + 1)
                i = j + 1
            elif i + 2 < n and src[i + 2] == "'":
                blank(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def skip_string(src: str, i: int, blank) -> int:
    """Blanks the string literal whose opening quote is at `i`; returns the index after it."""
    j = i + 1
    n = len(src)
    while j < n and src[j] != '"':
        j += 2 if src[j] == "\\" else 1
    blank(i, j + 1)
    return j + 1


TOKEN = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*|r#[A-Za-z_][A-Za-z0-9_]*|::|\S")


@dataclass
class Tok:
    text: str
    line: int


def tokenize(src: str) -> list[Tok]:
    toks = []
    line, last = 1, 0
    for m in TOKEN.finditer(strip(src)):
        line += src.count("\n", last, m.start())
        last = m.start()
        t = m.group()
        if t.startswith("r#"):
            t = t[2:]
        toks.append(Tok(t, line))
    return toks


def is_ident(t: str) -> bool:
    return bool(re.fullmatch(r"\$?[A-Za-z_][A-Za-z0-9_]*", t))


OPEN, CLOSE = "([{", ")]}"


def match_close(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at `i`."""
    depth = 0
    for k in range(i, len(toks)):
        if toks[k].text in OPEN:
            depth += 1
        elif toks[k].text in CLOSE:
            depth -= 1
            if depth == 0:
                return k
    return len(toks) - 1


def is_cfg_test(toks: list[Tok], i: int) -> bool:
    """`#[cfg(test)]` or `#[cfg(all(test, ...))]` starts at `i`."""
    words = [t.text for t in toks[i : i + 8]]
    return words[:5] == ["#", "[", "cfg", "(", "test"] or words[:7] == [
        "#", "[", "cfg", "(", "all", "(", "test"]


def drop_test_items(toks: list[Tok]) -> list[Tok]:
    """The tokens without the items gated by `#[cfg(test)]` (attributes included)."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        if toks[i].text == "#" and is_cfg_test(toks, i):
            j = match_close(toks, i + 1) + 1
            while j < len(toks) and toks[j].text == "#":  # further attributes
                j = match_close(toks, j + 1 if toks[j + 1].text == "[" else j + 2) + 1
            # The item: up to a `;` or through a `{...}` at its own level.
            while j < len(toks):
                t = toks[j].text
                if t == ";":
                    break
                if t == "{":
                    j = match_close(toks, j)
                    break
                if t in "([":
                    j = match_close(toks, j)
                j += 1
            i = j + 1
        else:
            out.append(toks[i])
            i += 1
    return out


# --------------------------------------------------------------------------- modules


@dataclass
class Ref:
    """A path written in `module` (at `line` of its file)."""

    module: "Module"
    segs: list[str]
    line: int
    glob: bool = False


@dataclass
class Module:
    name: str
    file: Path
    parent: "Module | None"
    child_dir: Path  # where `mod x;` in this module looks for x.rs / x/mod.rs
    children: dict[str, "Module"] = field(default_factory=dict)
    defs: set[str] = field(default_factory=set)
    aliases: dict[str, Ref] = field(default_factory=dict)
    globs: list[Ref] = field(default_factory=list)

    def path(self) -> str:
        parts = []
        m = self
        while m.parent is not None:
            parts.append(m.name)
            m = m.parent
        return "::".join(["crate"] + parts[::-1])


DEF_KEYWORDS = {"fn", "struct", "enum", "union", "trait", "type", "static", "const", "mod"}


class Target:
    """One crate root and its module tree."""

    def __init__(self, label: str, root_file: Path):
        self.label = label
        self.root = Module("crate", root_file, None, root_file.parent)
        self.refs: list[Ref] = []  # every import and path, to resolve once all is parsed
        self.files: dict[Path, Module] = {}
        self.missing: list[str] = []
        self.load(self.root)

    def load(self, module: Module) -> None:
        if module.file in self.files:
            return
        self.files[module.file] = module
        toks = drop_test_items(tokenize(module.file.read_text(encoding="utf-8")))
        self.walk(toks, module)

    def walk(self, toks: list[Tok], file_module: Module) -> None:
        # (module, brace depth of its body)
        scopes: list[tuple[Module, int]] = [(file_module, 0)]
        depth = 0
        i = 0
        while i < len(toks):
            t = toks[i].text
            module, body = scopes[-1]
            at_item_level = depth == body
            if t == "{":
                depth += 1
            elif t == "}":
                depth -= 1
                if len(scopes) > 1 and depth < scopes[-1][1]:
                    scopes.pop()
            elif t == "use" and (i == 0 or toks[i - 1].text != "::"):
                end = i + 1
                while end < len(toks) and toks[end].text != ";":
                    end += 1
                self.parse_use(toks[i + 1 : end], module)
                i = end
            elif t == "mod" and at_item_level and i + 2 < len(toks) and is_ident(toks[i + 1].text):
                name, after = toks[i + 1].text, toks[i + 2].text
                module.defs.add(name)
                if after == ";":
                    self.load_child(module, name)
                    i += 2
                elif after == "{":
                    child = Module(name, module.file, module, module.child_dir / name)
                    module.children[name] = child
                    depth += 1
                    scopes.append((child, depth))
                    i += 2
            elif at_item_level and t in DEF_KEYWORDS and i + 1 < len(toks):
                k = i + 1
                if toks[k].text in ("fn", "mut", "unsafe", "async", "extern"):
                    k += 1  # const fn, static mut, ...
                if k < len(toks) and is_ident(toks[k].text):
                    module.defs.add(toks[k].text)
            elif t == "macro_rules" and i + 2 < len(toks) and toks[i + 1].text == "!":
                module.defs.add(toks[i + 2].text)
            elif is_ident(t) and (i == 0 or toks[i - 1].text != "::"):
                segs, k = [t], i
                while k + 2 < len(toks) and toks[k + 1].text == "::" and is_ident(toks[k + 2].text):
                    segs.append(toks[k + 2].text)
                    k += 2
                if len(segs) > 1:
                    self.refs.append(Ref(module, segs, toks[i].line))
                    i = k
            i += 1

    def load_child(self, module: Module, name: str) -> None:
        for cand in (module.child_dir / f"{name}.rs", module.child_dir / name / "mod.rs"):
            if cand.is_file():
                child_dir = cand.parent if cand.name == "mod.rs" else cand.with_suffix("")
                child = Module(name, cand, module, child_dir)
                module.children[name] = child
                self.load(child)
                return
        self.missing.append(f"{module.file}: mod {name}; (no file found)")

    def parse_use(self, toks: list[Tok], module: Module) -> None:
        """Records the leaves of a use tree (`a::b::{c, d::*, e as f, self}`)."""
        words = [t.text for t in toks]
        line = toks[0].line if toks else 0
        if words and words[0] == "::":
            return  # an external crate

        def tree(k: int, prefix: list[str]) -> int:
            segs = list(prefix)
            while k < len(words):
                w = words[k]
                if w == "{":
                    k += 1
                    while k < len(words) and words[k] != "}":
                        k = tree(k, segs)
                        if k < len(words) and words[k] == ",":
                            k += 1
                    return k + 1
                if w == "*":
                    self.refs.append(Ref(module, segs, line, glob=True))
                    module.globs.append(Ref(module, segs, line, glob=True))
                    return k + 1
                if is_ident(w):
                    segs.append(w)
                    k += 1
                    if k < len(words) and words[k] == "::":
                        k += 1
                        continue
                    alias = segs[-1]
                    if segs[-1] == "self":
                        segs = segs[:-1]
                        alias = segs[-1] if segs else None
                    if k + 1 < len(words) and words[k] == "as":
                        alias = words[k + 1]
                        k += 2
                    if segs:
                        ref = Ref(module, segs, line)
                        self.refs.append(ref)
                        if alias and alias != "_":
                            module.aliases[alias] = ref
                    return k
                return k + 1  # something unexpected: skip it
            return k

        tree(0, [])

    # ----------------------------------------------------------------------- resolving

    def resolve(self, module: Module, segs: list[str], want_module=False, guard=0):
        """Where `segs`, written in `module`, leads: (Module, file) or None if external."""
        if guard > 32 or not segs:
            return None
        first = segs[0]
        if first in ("crate", "$crate"):
            return self.walk_path(self.root, segs[1:], want_module, guard)
        if first in ("self", "super"):
            cur, k = module, 0
            while k < len(segs) and segs[k] in ("self", "super"):
                if segs[k] == "super":
                    cur = cur.parent
                    if cur is None:
                        return None
                k += 1
            return self.walk_path(cur, segs[k:], want_module, guard)
        if first in module.children:
            return self.walk_path(module, segs, want_module, guard)
        if first in module.aliases:
            a = module.aliases[first]
            if a.segs == segs[:1]:
                return None  # `use serde;` and the like
            return self.resolve(a.module, a.segs + segs[1:], want_module, guard + 1)
        if first in module.defs:
            return (module, module.file)
        return None

    def walk_path(self, cur: Module, rest: list[str], want_module, guard):
        while rest:
            name = rest[0]
            if name in cur.children:
                cur, rest = cur.children[name], rest[1:]
                continue
            if name in cur.defs:
                return (cur, cur.file)
            if name in cur.aliases:
                a = cur.aliases[name]
                return self.resolve(a.module, a.segs + rest[1:], want_module, guard + 1)
            for g in cur.globs:
                target = self.resolve(g.module, g.segs, True, guard + 1)
                if target and self.defines(target[0], name):
                    return self.walk_path(target[0], rest, want_module, guard + 1)
            return (cur, cur.file)
        return (cur, cur.file)

    def defines(self, module: Module, name: str) -> bool:
        return name in module.children or name in module.defs or name in module.aliases

    def edges(self) -> dict[Path, dict[Path, Ref]]:
        """file -> {imported file -> first reference}."""
        out: dict[Path, dict[Path, Ref]] = {f: {} for f in self.files}
        for ref in self.refs:
            target = self.resolve(ref.module, ref.segs, ref.glob)
            if target is None:
                continue
            src, dst = ref.module.file, target[1]
            if src != dst:
                prev = out[src].get(dst)
                if prev is None or ref.line < prev.line:
                    out[src][dst] = ref
        return out


# --------------------------------------------------------------------------- cycles


def strongly_connected(graph: dict[Path, dict[Path, Ref]]) -> list[list[Path]]:
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    out: list[list[Path]] = []
    counter = [0]

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def long_cycle(graph, comp: list[Path]) -> list[Path] | None:
    """A simple cycle of three or more files inside `comp`, if there is one."""
    members = set(comp)
    budget = [20000]

    def dfs(path: list[Path], seen: set[Path]):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        for w in sorted(graph[path[-1]]):
            if w not in members:
                continue
            if w == path[0] and len(path) >= 3:
                return path + [w]
            if w not in seen:
                found = dfs(path + [w], seen | {w})
                if found:
                    return found
        return None

    for start in sorted(comp):
        found = dfs([start], {start})
        if found:
            return found
    return None


# --------------------------------------------------------------------------- workspace


def targets_of(pkg_dir: Path) -> list[tuple[str, Path]]:
    manifest = tomllib.loads((pkg_dir / "Cargo.toml").read_text(encoding="utf-8"))
    found: dict[Path, str] = {}

    def add(kind: str, path: Path) -> None:
        if path.is_file():
            found.setdefault(path.resolve(), kind)

    lib = manifest.get("lib", {})
    add("lib", pkg_dir / lib.get("path", "src/lib.rs"))
    add("bin", pkg_dir / "src/main.rs")
    build = manifest.get("package", {}).get("build", "build.rs")
    if isinstance(build, str):
        add("build", pkg_dir / build)
    for kind, section in (("bin", "bin"), ("test", "test"), ("bench", "bench"), ("example", "example")):
        for t in manifest.get(section, []):
            if "path" in t:
                add(kind, pkg_dir / t["path"])
    for kind, d in (("bin", "src/bin"), ("test", "tests"), ("bench", "benches"), ("example", "examples")):
        base = pkg_dir / d
        if base.is_dir():
            for p in sorted(base.iterdir()):
                add(kind, p if p.suffix == ".rs" else p / "main.rs")
    return [(kind, path) for path, kind in found.items()]


def workspace_members() -> list[Path]:
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    return [ROOT / m for m in manifest["workspace"]["members"]]


def package_name(pkg_dir: Path) -> str:
    manifest = tomllib.loads((pkg_dir / "Cargo.toml").read_text(encoding="utf-8"))
    return manifest.get("package", {}).get("name", pkg_dir.name)


def rel(p: Path) -> str:
    return os.path.relpath(p, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Report files that import each other (see the module docstring).")
    ap.add_argument("--crate", action="append", metavar="NAME",
                    help="check only this package (name such as wormhole-server, or its "
                         "directory such as bindings/python); may be repeated")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every file's imports")
    args = ap.parse_args()

    members = workspace_members()
    if args.crate:
        chosen = []
        for want in args.crate:
            match = [m for m in members
                     if package_name(m) == want or rel(m) == want.rstrip("/")]
            if not match:
                names = ", ".join(f"{package_name(m)} ({rel(m)})" for m in members)
                print(f"check-import-cycles: no crate {want!r}; members: {names}",
                      file=sys.stderr)
                return 2
            chosen += match
        members = chosen

    problems = 0
    files_seen: set[Path] = set()
    for pkg in members:
        name = package_name(pkg)
        reported: set[frozenset[Path]] = set()
        for kind, root_file in targets_of(pkg):
            target = Target(f"{name} {kind} {rel(root_file)}", root_file)
            files_seen.update(target.files)
            for m in target.missing:
                print(f"warning: {m}", file=sys.stderr)
            graph = target.edges()
            if args.verbose:
                print(f"{target.label}:")
                for f in sorted(graph):
                    deps = ", ".join(rel(d) for d in sorted(graph[f])) or "-"
                    print(f"  {rel(f)} -> {deps}")
            for a in sorted(graph):
                for b in sorted(graph[a]):
                    if a < b and a in graph[b] and frozenset((a, b)) not in reported:
                        reported.add(frozenset((a, b)))
                        problems += 1
                        ra, rb = graph[a][b], graph[b][a]
                        print(f"{name}: {rel(a)} <-> {rel(b)}")
                        print(f"    {rel(a)}:{ra.line}: {'::'.join(ra.segs)}")
                        print(f"    {rel(b)}:{rb.line}: {'::'.join(rb.segs)}")
            for comp in strongly_connected(graph):
                if len(comp) < 3:
                    continue
                cyc = long_cycle(graph, comp)
                if cyc is None or frozenset(cyc) in reported:
                    continue
                reported.add(frozenset(cyc))
                problems += 1
                print(f"{name}: cycle of {len(cyc) - 1} files: "
                      + " -> ".join(rel(p) for p in cyc))
                for x, y in zip(cyc, cyc[1:]):
                    r = graph[x][y]
                    print(f"    {rel(x)}:{r.line}: {'::'.join(r.segs)}")
    if problems:
        print(f"check-import-cycles: {problems} cycle(s) in {len(members)} crate(s)",
              file=sys.stderr)
        return 1
    print(f"check-import-cycles: no import cycles in {len(members)} crate(s), "
          f"{len(files_seen)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
