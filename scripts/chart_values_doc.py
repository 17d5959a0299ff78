#!/usr/bin/env python3
"""Keep the chart's values.yaml comments, values.schema.json and README values table in step.

Checks (default, exit 1 on a problem):
  * every key the chart defines (a property in values.schema.json, at any depth, outside
    free-form Kubernetes objects) has a "# --" comment right above it in values.yaml;
  * every key in values.yaml is known to the schema;
  * the values table in README.md (between the values-table markers) matches a fresh render.

With --write, rewrites the README table instead of checking it.

Usage: chart_values_doc.py [--write] CHART_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

import yaml

KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_][A-Za-z0-9_.\-/]*):(?:\s|$)")
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


def scan(values_path: str) -> list[tuple[str, str]]:
    """(dotted key, "# --" description or "") for every mapping key, in file order."""
    keys = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    comment_indent = None
    for raw in open(values_path, encoding="utf-8").read().splitlines():
        line = raw.rstrip()
        stripped = line.lstrip()
        if not stripped:
            comment, comment_indent = [], None
            continue
        indent = len(line) - len(stripped)
        if stripped.startswith("#"):
            if comment and indent != comment_indent:
                comment = []
            comment_indent = indent
            comment.append(stripped)
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            comment, comment_indent = [], None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        description = ""
        if comment and comment[0].startswith("# --") and comment_indent == indent:
            parts = [comment[0][4:].strip()] + [c[1:].strip() for c in comment[1:]]
            description = " ".join(p for p in parts if p)
        keys.append((path, description))
        stack.append((indent, match["key"]))
        comment, comment_indent = [], None
    return keys


def schema_node(schema: dict, path: str):
    """The schema node for a dotted path; None if unknown; "free" inside a free-form object."""
    node = schema
    for part in path.split("."):
        props = node.get("properties")
        if props is None:
            return "free"
        if part not in props:
            return None
        node = props[part]
    return node


def value_at(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def type_of(node: dict) -> str:
    if "oneOf" in node:
        return " or ".join(type_of(n) for n in node["oneOf"])
    kind = node.get("type", "any")
    if kind == "array" and isinstance(node.get("items"), dict) and "type" in node["items"]:
        return f"list of {node['items']['type']}"
    if "enum" in node:
        return f"{kind} ({', '.join(node['enum'])})"
    return kind


def table(keys, schema, values) -> str:
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, description in keys:
        node = schema_node(schema, path)
        if not isinstance(node, dict):
            continue
        if "properties" in node:
            default = "see below"
        else:
            default = "`" + json.dumps(value_at(values, path), separators=(", ", ": ")) + "`"
        cell = description.replace("|", "\\|")
        rows.append(f"| `{path}` | {type_of(node)} | {default} | {cell} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("chart_dir")
    args = parser.parse_args()

    values_path = os.path.join(args.chart_dir, "values.yaml")
    schema = json.load(open(os.path.join(args.chart_dir, "values.schema.json"), encoding="utf-8"))
    values = yaml.safe_load(open(values_path, encoding="utf-8"))
    keys = scan(values_path)
    problems = []

    first_line = open(values_path, encoding="utf-8").readline().strip()
    if first_line != "# yaml-language-server: $schema=values.schema.json":
        problems.append("values.yaml must start with '# yaml-language-server: $schema=values.schema.json'")
    documented = 0
    for path, description in keys:
        node = schema_node(schema, path)
        if node is None:
            problems.append(f"values.yaml: {path} is not in values.schema.json")
        elif node != "free":
            documented += 1
            if not description:
                problems.append(f"values.yaml: {path} has no '# --' comment")

    readme_path = os.path.join(args.chart_dir, "README.md")
    readme = open(readme_path, encoding="utf-8").read()
    if START not in readme or END not in readme:
        problems.append(f"{readme_path}: missing {START} / {END} markers")
    else:
        head, rest = readme.split(START, 1)
        current, tail = rest.split(END, 1)
        fresh = "\n" + table(keys, schema, values)
        if args.write:
            open(readme_path, "w", encoding="utf-8").write(head + START + fresh + END + tail)
            print(f"wrote the values table in {readme_path}")
        elif current != fresh:
            problems.append(f"{readme_path}: values table is out of date (run scripts/chart_values_doc.py --write {args.chart_dir})")

    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(f"ok   {documented} chart keys documented with '# --', schema and README table in step")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
