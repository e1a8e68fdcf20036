#!/usr/bin/env python3
"""Print, write or check the public API of the `sheepdog` library crate, one item a line.

Why: docs/public-api.txt is a checked-in snapshot of everything users of the library can
name. CI runs `--check`, so a change to the public API shows up as a diff in review and is
accepted on purpose (`--write`) instead of slipping in with a refactor.

How: rustdoc's JSON output describes each public item. It is unstable, but RUSTC_BOOTSTRAP=1
enables it on stable Rust, so this needs neither nightly nor a tool like cargo-public-api.
The format changes between Rust releases (`format_version`); this script reads format 57
(what the rustdoc of Rust 1.95 writes). With a toolchain whose rustdoc writes
another format, `--check` prints one line saying so and passes (a snapshot rendered from a
format it does not know would be a false diff), `--write` refuses, and printing warns.
Usage: python3 scripts/public-api.py [--write | --check]
"""

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

CRATE = "sheepdog"
ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "docs" / "public-api.txt"
TARGET_DIR = ROOT / "target" / "public-api"  # its own, so the normal build stays cached
KNOWN_FORMAT = 57
HINT = "public API changed: review, then run python3 scripts/public-api.py --write"


def rustdoc_json():
    """Runs rustdoc (a no-op when nothing changed) and returns its parsed JSON output."""
    cmd = ["cargo", "rustdoc", "--quiet", "-p", CRATE, "--lib", "--",
           "-Z", "unstable-options", "--output-format", "json"]
    env = dict(os.environ, RUSTC_BOOTSTRAP="1", CARGO_TARGET_DIR=str(TARGET_DIR))
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"public-api: `{' '.join(cmd)}` failed:\n{run.stderr}")
    return json.loads((TARGET_DIR / "doc" / f"{CRATE}.json").read_text(encoding="utf-8"))


def rustc_version():
    run = subprocess.run(["rustc", "--version"], cwd=ROOT, capture_output=True, text=True)
    return run.stdout.strip() or "rustc of unknown version"


def tag(value):
    """Splits a serde-tagged enum value, {"kind": inner} or "kind", into (kind, inner)."""
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.items()))
    return (value, None) if isinstance(value, str) else ("?", value)


def has_attr(item, text):
    return text in json.dumps(item.get("attrs", []))


class Api:
    def __init__(self, doc):
        self.index = doc["index"]
        self.qualify = False  # name the crate's own types by public path (in impl lines)
        root = self.get(doc["root"])
        self.found = [(root["name"], root)]  # (public path, item) for each reachable item
        self.walk(root, root["name"], {root["id"]})
        self.public_path = {}  # item id -> its shortest public path
        for path, item in sorted(self.found, key=lambda f: (f[0].count("::"), f[0])):
            self.public_path.setdefault(item["id"], path)

    def get(self, item_id):
        return self.index.get(str(item_id))

    def items(self, ids):
        """The items behind `ids`, less those marked #[doc(hidden)] (like `__private`)."""
        return [i for i in map(self.get, ids) if i and not has_attr(i, "doc(hidden)")]

    def walk(self, module, path, seen):
        """Collects the public items of `module` under `path`, following `pub use`."""
        for item in self.items(module["inner"]["module"]["items"]):
            name, use = item["name"], item["inner"].get("use")
            target = use and self.get(use["id"])
            if target and target["crate_id"] == 0:  # re-export of one of our items
                if has_attr(target, "doc(hidden)"):
                    continue
                if use["is_glob"]:  # the module's items appear directly in `path`
                    if target["id"] not in seen and "module" in target["inner"]:
                        self.walk(target, path, seen | {target["id"]})
                    continue
                item, name = target, use["name"]
            elif use:  # re-export of a foreign item: listed as `pub use`
                name = use["name"]
            self.found.append((f"{path}::{name}", item))
            if "module" in item["inner"] and item["id"] not in seen:
                self.walk(item, f"{path}::{name}", seen | {item["id"]})

    def lines(self):
        out = set()
        for path, item in self.found:
            try:
                out.update(self.item_lines(path, item))
            except (KeyError, TypeError, AttributeError, ValueError) as err:  # unknown shape
                print(f"public-api: warning: cannot render {path}: {err!r}", file=sys.stderr)
                out.add(f"<unrenderable {tag(item['inner'])[0]}> {path}")
        return sorted(out)

    def item_lines(self, path, item):
        kind, it = tag(item["inner"])
        g = it.get("generics") if isinstance(it, dict) else None
        if kind == "use":
            return [f"pub use {path} = {it['source']}"]
        if kind == "function":
            return [self.function(path, it)]
        if kind in ("constant", "assoc_const", "static"):
            word = "static" + " mut" * it.get("is_mutable", False) if kind == "static" else "const"
            return [f"pub {word} {path}: {self.ty(it['type'])}"]
        if kind in ("type_alias", "assoc_type"):  # assoc_type: in traits
            bounds = f": {self.bounds(it['bounds'])}" if it.get("bounds") else ""
            value = f" = {self.ty(it['type'])}" if it.get("type") else ""
            return [f"pub type {path}{self.params(g)}{bounds}{value}{self.where(g)}"]
        if kind == "trait":
            bounds = f": {self.bounds(it['bounds'])}" if it["bounds"] else ""
            out = [f"pub {'unsafe ' * it['is_unsafe']}trait {path}{self.params(g)}{bounds}"
                   + self.where(g)] + [self.impl_line(i) for i in self.items(it["implementations"])]
            for sub in self.items(it["items"]):
                out += self.item_lines(f"{path}::{sub['name']}", sub)
            return out
        if kind not in ("struct", "enum", "union"):  # module, macro, ...
            return [f"pub {'mod' if kind == 'module' else kind} {path}"]
        pre = "#[non_exhaustive] " if has_attr(item, "non_exhaustive") else ""
        out = [f"{pre}pub {kind} {path}{self.params(g)}{self.where(g)}"]
        if kind == "enum":
            for v in self.items(it["variants"]):
                out += self.variant(f"{path}::{v['name']}", v)
        else:
            out += self.fields(path, it.get("kind", {"plain": it}))
        for imp in self.items(it["impls"]):
            i = imp["inner"]["impl"]
            if i["is_synthetic"] or i["blanket_impl"]:  # auto traits, blanket impls
                continue
            if i["trait"]:
                out.append(self.impl_line(imp))
                continue
            for sub in self.items(i["items"]):  # an inherent impl: its public items
                if sub["visibility"] == "public":
                    out += self.item_lines(f"{path}::{sub['name']}", sub)
        return out

    def variant(self, path, item):
        it = item["inner"]["variant"]
        kind, data = tag(it["kind"])
        shape = ""
        if kind == "tuple":  # hidden fields show as `_`
            shape = "(" + ", ".join(self.ty(f["inner"]["struct_field"]) if f and not has_attr(
                f, "doc(hidden)") else "_" for f in map(self.get, data)) + ")"
        elif kind == "struct":
            names = [f["name"] for f in self.items(data["fields"])]
            shape = " { " + ", ".join(names + [".."] * data["has_stripped_fields"]) + " }"
        disc = f" = {it['discriminant']['expr']}" if it.get("discriminant") else ""
        pre = "#[non_exhaustive] " if has_attr(item, "non_exhaustive") else ""
        return [f"{pre}pub variant {path}{shape}{disc}"] + self.fields(path, it["kind"])

    def fields(self, path, kind_json):
        """Fields of a struct, union or variant (rustdoc leaves private ones out)."""
        kind, data = tag(kind_json)
        ids = data if kind == "tuple" else (data or {}).get("fields", [])  # or a unit kind
        return [f"pub field {path}::{pos if kind == 'tuple' else f['name']}: "
                f"{self.ty(f['inner']['struct_field'])}"
                for pos, f in enumerate(map(self.get, ids)) if f and not has_attr(f, "doc(hidden)")]

    def impl_line(self, item):
        """`impl Trait for Type`, with the associated types and consts it sets."""
        i, g = item["inner"]["impl"], item["inner"]["impl"]["generics"]
        self.qualify = True
        try:
            assoc = [f"type {s['name']} = {self.ty(s['inner']['assoc_type']['type'])}"
                     if "assoc_type" in s["inner"] else
                     f"const {s['name']}: {self.ty(s['inner']['assoc_const']['type'])}"
                     for s in self.items(i["items"]) if "function" not in s["inner"]]
            trait = self.path(dict(i["trait"], path=i["trait"]["path"].split("::")[-1]))
            return (f"{'unsafe ' * i['is_unsafe']}impl{self.params(g)} {'!' * i['is_negative']}"
                    f"{trait} for {self.ty(i['for'])}{self.where(g)}"
                    + (" { " + "; ".join(assoc) + " }" if assoc else ""))
        finally:
            self.qualify = False

    def function(self, path, f):
        """A function's signature; without `path`, a function pointer type."""
        h, sig, g = f["header"], f["sig"], f.get("generics", {"params": [], "where_predicates": []})
        quals = "const " * h["is_const"] + "async " * h["is_async"] + "unsafe " * h["is_unsafe"]
        abi = tag(h["abi"])[0]
        if abi != "Rust":
            quals += f'extern "{abi if abi == "C" else abi.lower()}" '
        args = [self.arg(name, t, named=bool(path)) for name, t in sig["inputs"]]
        args += ["..."] * sig["is_c_variadic"]
        ret = f" -> {self.ty(sig['output'])}" if sig["output"] else ""
        head = f"pub {quals}fn {path}" if path else f"{quals}fn"
        return f"{head}{self.params(g)}({', '.join(args)}){ret}{self.where(g)}"

    def arg(self, name, t, named):
        ty = self.ty(t)
        if name == "self" and re.fullmatch(r"(&('\w+ )?(mut )?)?Self", ty):
            return ty[:-4] + "self"  # self, &self, &'a mut self
        return f"{name}: {ty}" if named or name != "_" else ty

    def params(self, g):
        """`<'a, T: Bound = Default, const N: usize>`, less `impl Trait` arguments."""
        out = []
        for p in g["params"]:
            kind, k = tag(p["kind"])
            if kind == "lifetime":
                out.append(p["name"] + (": " + " + ".join(k["outlives"]) if k["outlives"] else ""))
            elif kind == "type" and not k["is_synthetic"]:
                out.append(p["name"] + (f": {self.bounds(k['bounds'])}" if k["bounds"] else "")
                           + (f" = {self.ty(k['default'])}" if k["default"] else ""))
            elif kind == "const":
                out.append(f"const {p['name']}: {self.ty(k['type'])}"
                           + (f" = {k['default']}" if k["default"] else ""))
        return f"<{', '.join(out)}>" if out else ""

    def where(self, g):
        preds = []
        for kind, p in map(tag, g["where_predicates"]):
            if kind == "bound_predicate":
                preds.append(f"{self.hrtb(p)}{self.ty(p['type'])}: {self.bounds(p['bounds'])}")
            elif kind == "lifetime_predicate":
                preds.append(f"{p['lifetime']}: {' + '.join(p['outlives'])}")
            else:
                preds.append(f"{self.ty(p['lhs'])} = {self.term(p['rhs'])}")  # eq_predicate
        return " where " + ", ".join(preds) if preds else ""

    def hrtb(self, x):
        """`for<'a> `, from a bound's or function pointer's own lifetimes."""
        lifetimes = x.get("generic_params")
        return f"for{self.params({'params': lifetimes})} " if lifetimes else ""

    def bounds(self, bounds):
        out = []
        for kind, b in map(tag, bounds):
            if kind == "trait_bound":
                maybe = {"maybe": "?", "maybe_const": "~const "}.get(b["modifier"], "")
                out.append(self.hrtb(b) + maybe + self.path(b["trait"]))
            elif kind == "use":  # precise capturing: use<'a, T>
                out.append(f"use<{', '.join(str(tag(a)[1] or a) for a in b)}>")
            else:
                out.append(b if kind == "outlives" else f"<{kind}>")
        return " + ".join(out)

    def term(self, term):
        kind, t = tag(term)
        return self.ty(t) if kind == "type" else t["expr"] if kind == "constant" else "_"

    def path(self, p):
        """The path as written in the source, less crate-relative or macro-made prefixes (or
        the crate's own types by public path in `qualify` mode), and its generic args."""
        name = p["path"]
        if self.qualify and p.get("id") in self.public_path:
            name = self.public_path[p["id"]]
        elif name.startswith(("$crate::", "::", "crate::", "self::", "super::")):
            name = name.split("::")[-1]
        kind, a = tag(p.get("args") or {"angle_bracketed": {"args": [], "constraints": []}})
        if kind == "parenthesized":  # Fn(A, B) -> C
            ret = f" -> {self.ty(a['output'])}" if a["output"] else ""
            return f"{name}({', '.join(map(self.ty, a['inputs']))}){ret}"
        if kind != "angle_bracketed":
            return f"{name}(..)"  # return type notation
        args = [self.ty(v) if k == "type" else v["expr"] if k == "const" else "_" if k == "infer"
                else str(v) for k, v in map(tag, a["args"])]
        for c in a["constraints"]:  # Item = T, Item: Bound
            kind, b = tag(c["binding"])
            args.append(c["name"] + (f" = {self.term(b)}" if kind == "equality"
                                     else f": {self.bounds(b)}"))
        return f"{name}<{', '.join(args)}>" if args else name

    def ty(self, t):
        kind, v = tag(t)
        if kind == "resolved_path":
            return self.path(v)
        if kind in ("generic", "primitive"):
            return v
        if kind == "borrowed_ref":
            life = v["lifetime"] + " " if v["lifetime"] else ""
            return f"&{life}{'mut ' * v['is_mutable']}{self.ty(v['type'])}"
        if kind == "raw_pointer":
            return f"*{'mut' if v['is_mutable'] else 'const'} {self.ty(v['type'])}"
        if kind == "tuple":
            return "(" + ", ".join(map(self.ty, v)) + ("," if len(v) == 1 else "") + ")"
        if kind in ("slice", "array"):
            return f"[{self.ty(v)}]" if kind == "slice" else f"[{self.ty(v['type'])}; {v['len']}]"
        if kind == "impl_trait":
            return f"impl {self.bounds(v)}"
        if kind == "dyn_trait":
            traits = [{"trait_bound": dict(p, modifier="none")} for p in v["traits"]]
            return f"dyn {self.bounds(traits)}" + (f" + {v['lifetime']}" if v["lifetime"] else "")
        if kind == "function_pointer":
            return self.hrtb(v) + self.function("", v)
        if kind == "qualified_path":  # <T as Trait>::Name, or Self::Name (empty trait path)
            owner, trait = self.ty(v["self_type"]), v.get("trait")
            owner = f"<{owner} as {self.path(trait)}>" if trait and trait["path"] else owner
            return f"{owner}::{self.path(dict(path=v['name'], args=v.get('args')))}"
        return "_" if kind == "infer" else f"<{kind}>"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write docs/public-api.txt")
    mode.add_argument("--check", action="store_true", help="fail if docs/public-api.txt is stale")
    opts = parser.parse_args()
    doc = rustdoc_json()
    found = doc.get("format_version")
    if found != KNOWN_FORMAT:
        what = (f"rustdoc JSON format {found} ({rustc_version()}), this script reads "
                f"format {KNOWN_FORMAT}")
        if opts.check:
            print(f"public-api: check skipped: {what}", file=sys.stderr)
            return 0
        if opts.write:
            sys.exit(f"public-api: not written: {what}")
        print(f"public-api: warning: {what}: check the output", file=sys.stderr)
    text = "".join(line + "\n" for line in Api(doc).lines())
    old = SNAPSHOT.read_text(encoding="utf-8") if SNAPSHOT.exists() else ""
    if opts.write:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    elif opts.check and old != text:
        name = "docs/public-api.txt"
        sys.stdout.writelines(difflib.unified_diff(
            old.splitlines(True), text.splitlines(True), name, name + " (current API)"))
        sys.stdout.flush()  # the hint goes after the diff in CI logs
        print(HINT, file=sys.stderr)
        return 1
    elif not opts.check:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
