#!/usr/bin/env python3
"""Check that the Dockerfile's build context is complete, without running docker.

* every source of a COPY from the build context (not --from=...) exists in the repository,
  and a source written with a trailing "/" is a directory;
* no COPY source is excluded by .dockerignore;
* include_str!/include_bytes! paths in src/ and build.rs point inside the copied sources;
* the paths of targets declared in Cargo.toml ([lib], [[bin]], [[test]], [[bench]],
  [[example]]; explicit or cargo's default for the name) are inside the copied sources
  (cargo refuses a manifest whose declared targets are missing);
* the binary the Dockerfile builds (--bin NAME) is a bin target of Cargo.toml.

Usage: check_dockerfile.py [REPO_ROOT] [--print-sources | --runtime]
  --print-sources: print the build-context paths the build stage copies, one per line.
  --runtime: check the image's contract instead, from the parsed instructions (so layout and
             comments may change freely): a `cargo build` with --release and --locked, and a
             final stage on distroless cc (nonroot) as user 65532, exposing 9090 and 8080, with
             the binary as its exec-form ENTRYPOINT.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import sys
import tomllib


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    result, current = [], ""
    for line in open(dockerfile, encoding="utf-8").read().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        result.append((word.upper(), rest.strip()))
        current = ""
    return result


def ignore_patterns(path: str) -> list[tuple[bool, str]]:
    """(negated, pattern) for each .dockerignore line."""
    if not os.path.exists(path):
        return []
    patterns = []
    for line in open(path, encoding="utf-8").read().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        patterns.append((negated, pattern.strip("/").removeprefix("./")))
    return patterns


def ignored(rel: str, patterns) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a pattern also covers what is below it."""
    rel = rel.strip("/")
    candidates = [rel]
    parts = rel.split("/")
    candidates += ["/".join(parts[:i]) for i in range(1, len(parts))]
    verdict = False
    for negated, pattern in patterns:
        for candidate in candidates:
            base = candidate.split("/")[-1]
            if fnmatch.fnmatchcase(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(base, pattern[3:])
            ):
                verdict = not negated
                break
    return verdict


def inside(path: str, roots: list[str]) -> bool:
    path = os.path.normpath(path)
    return any(path == os.path.normpath(r) or path.startswith(os.path.normpath(r) + os.sep) for r in roots)


def default_target_path(kind: str, name: str, root: str) -> str | None:
    """Where cargo looks for a declared target without `path` (it must exist, or cargo
    refuses the whole manifest, even to build another target)."""
    folder = {"bin": "src/bin", "test": "tests", "bench": "benches", "example": "examples"}.get(kind)
    if folder is None:
        return None
    single, nested = f"{folder}/{name}.rs", f"{folder}/{name}/main.rs"
    return nested if os.path.exists(os.path.join(root, nested)) else single


RUNTIME_BASE = "gcr.io/distroless/cc-debian12:nonroot"
RUNTIME_USER = "65532"
RUNTIME_PORTS = {"9090", "8080"}
ENTRYPOINT = ["/usr/local/bin/pg-queue-scaler"]


def runtime_problems(steps: list[tuple[str, str]]) -> list[str]:
    """What the image's contract (see --runtime) finds wrong in the parsed instructions."""
    problems = []
    builds = [shlex.split(args) for word, args in steps if word == "RUN" and "cargo build" in args]
    if not any({"--release", "--locked"} <= set(tokens) for tokens in builds):
        problems.append("no RUN runs cargo build with --release and --locked")
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    final = steps[starts[-1]:] if starts else []
    base = final[0][1].split()[0] if final else ""
    if base != RUNTIME_BASE:
        problems.append(f"the final stage is FROM {base or '(none)'}, not {RUNTIME_BASE}")
    users = [args.split(":")[0] for word, args in final if word == "USER"]
    if users[-1:] != [RUNTIME_USER]:
        problems.append(f"the final stage runs as {users[-1] if users else 'root'}, not {RUNTIME_USER}")
    exposed = {port.split("/")[0] for word, args in final if word == "EXPOSE" for port in args.split()}
    if not RUNTIME_PORTS <= exposed:
        problems.append(f"the final stage exposes {sorted(exposed)}, not {sorted(RUNTIME_PORTS)}")
    entrypoints = [args for word, args in final if word == "ENTRYPOINT"]
    try:
        entrypoint = json.loads(entrypoints[-1]) if entrypoints else None
    except json.JSONDecodeError:
        entrypoint = None
    if entrypoint != ENTRYPOINT:
        problems.append(f"the ENTRYPOINT is not the exec form {json.dumps(ENTRYPOINT)}")
    return problems


def main() -> int:
    positional = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    root = os.path.abspath(positional[0] if positional else os.path.join(os.path.dirname(__file__), ".."))
    problems: list[str] = []
    steps = instructions(os.path.join(root, "Dockerfile"))
    if "--runtime" in sys.argv:
        problems = runtime_problems(steps)
        for problem in problems:
            print(f"FAIL Dockerfile: {problem}")
        return 1 if problems else 0
    patterns = ignore_patterns(os.path.join(root, ".dockerignore"))

    copied: list[str] = []
    for word, args in steps:
        if word not in ("COPY", "ADD"):
            continue
        tokens = [t for t in shlex.split(args) if not t.startswith("--")]
        if any(t.startswith("--from") for t in shlex.split(args)) or len(tokens) < 2:
            continue
        for source in tokens[:-1]:
            full = os.path.join(root, source)
            if not os.path.exists(full):
                problems.append(f"{word} {source}: not in the repository")
            elif source.endswith("/") and not os.path.isdir(full):
                problems.append(f"{word} {source}: not a directory")
            if ignored(source, patterns):
                problems.append(f"{word} {source}: excluded by .dockerignore")
            copied.append(source.rstrip("/") or ".")
    if not copied:
        problems.append("no COPY from the build context found")

    sources = [os.path.join(root, "build.rs")] if os.path.exists(os.path.join(root, "build.rs")) else []
    for base, _, files in os.walk(os.path.join(root, "src")):
        sources += [os.path.join(base, f) for f in files if f.endswith(".rs")]
    include = re.compile(r'include_(?:str|bytes)!\s*\(\s*"([^"]+)"\s*\)')
    for source in sources:
        for target in include.findall(open(source, encoding="utf-8").read()):
            resolved = os.path.relpath(os.path.normpath(os.path.join(os.path.dirname(source), target)), root)
            if not inside(resolved, copied):
                problems.append(f"{os.path.relpath(source, root)} includes {resolved}, which the Dockerfile does not copy")

    manifest_path = os.path.join(root, "Cargo.toml")
    bins = set()
    if os.path.exists(manifest_path):
        manifest = tomllib.load(open(manifest_path, "rb"))
        package = manifest.get("package", {}).get("name")
        targets = [("lib", manifest["lib"])] if "lib" in manifest else []
        for kind in ("bin", "test", "bench", "example"):
            targets += [(kind, t) for t in manifest.get(kind, [])]
        for kind, target in targets:
            if kind == "bin":
                bins.add(target.get("name"))
            path = target.get("path") or default_target_path(kind, target.get("name", ""), root)
            if path and not inside(path, copied):
                problems.append(f"Cargo.toml [{kind}] {target.get('name', '')} at {path} is not copied by the Dockerfile")
        if os.path.exists(os.path.join(root, "src", "main.rs")) and package:
            bins.add(package)
    for word, args in steps:
        match = re.search(r"--bin[= ]([A-Za-z0-9_-]+)", args) if word == "RUN" else None
        if match and match.group(1) not in bins:
            problems.append(f"the Dockerfile builds --bin {match.group(1)}, which Cargo.toml does not define")

    if "--print-sources" in sys.argv:
        print("\n".join(copied))
        return 1 if problems else 0
    for problem in problems:
        print(f"FAIL Dockerfile: {problem}")
    if not problems:
        print(f"ok   Dockerfile: COPY sources exist and are in the build context: {', '.join(copied)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
