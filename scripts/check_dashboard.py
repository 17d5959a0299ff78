#!/usr/bin/env python3
"""Schema-level checks of the Grafana dashboard (charts/pg-queue-scaler/dashboards/*.json) and
of the ConfigMap the chart wraps it in. Whether every query returns data is proved elsewhere,
against a real Prometheus scraping the real scaler (tests/prometheus.rs).

  lint DASHBOARD [--readme README]
      * valid JSON with a title, a uid, panels and template variables;
      * a `datasource` template variable of type datasource for Prometheus, and every panel,
        every query and every query variable uses it (`${datasource}`), never a fixed uid;
      * no hard-coded namespace (or job): every label matcher on `namespace` or `job` is
        `=~"$namespace"` / `=~"$job"`, and every metric selector in a panel query carries both,
        so the dashboard follows whatever namespace and release the user picks;
      * every panel other than rows has a title, a description and at least one query;
      * panel ids are unique;
      * with --readme: the README's panel table (between the dashboard-panels markers) names
        exactly the dashboard's panels, in order.
  configmap RENDER DASHBOARD --label KEY=VALUE [--namespace NS]
      RENDER (helm template output) holds exactly one ConfigMap labelled KEY=VALUE, in NS if
      given, whose only data entry is DASHBOARD's JSON, unchanged.

Exits 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import yaml

TEMPLATED = {"type": "prometheus", "uid": "${datasource}"}
MATCHER = re.compile(r'\b(namespace|job)\s*(=~|!~|!=|=)\s*"([^"]*)"')
SELECTOR = re.compile(r"\b(pg_queue_scaler_[a-z_]+)\s*(\{[^}]*\})?")
START = "<!-- dashboard-panels:start -->"
END = "<!-- dashboard-panels:end -->"


def panels(dashboard: dict) -> list[dict]:
    """Every panel, with the panels of collapsed rows, in order."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def lint(path: str, readme: str | None) -> list[str]:
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            dashboard = json.load(handle)
    except (OSError, ValueError) as error:
        return [f"{path}: not valid JSON: {error}"]
    if not isinstance(dashboard, dict):
        return [f"{path}: not a JSON object"]
    for key in ("title", "uid", "panels", "templating"):
        if key not in dashboard:
            problems.append(f"no {key!r}")

    variables = dashboard.get("templating", {}).get("list", [])
    source = [v for v in variables if v.get("name") == "datasource"]
    if len(source) != 1 or source[0].get("type") != "datasource" or source[0].get("query") != "prometheus":
        problems.append("needs one template variable 'datasource' of type datasource with query 'prometheus'")
    for variable in variables:
        if variable.get("type") != "query":
            continue
        name = variable.get("name")
        if variable.get("datasource") != TEMPLATED:
            problems.append(f"variable {name!r}: datasource is {variable.get('datasource')!r}, not {TEMPLATED}")
        query = variable.get("query")
        texts = [query.get("query", "") if isinstance(query, dict) else str(query), variable.get("definition", "")]
        problems += [f"variable {name!r}: {p}" for text in texts for p in hard_coded(text)]

    ids = [p.get("id") for p in panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append(f"panel ids are not unique: {ids}")
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not panel.get("title") or not panel.get("description"):
            problems.append(f"{title}: needs a title and a description (the question it answers)")
        if panel.get("datasource") != TEMPLATED:
            problems.append(f"{title}: datasource is {panel.get('datasource')!r}, not {TEMPLATED}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no queries")
        for target in targets:
            ref = target.get("refId")
            if target.get("datasource") != TEMPLATED:
                problems.append(f"{title} {ref}: datasource is {target.get('datasource')!r}, not {TEMPLATED}")
            expr = target.get("expr", "")
            if not expr:
                problems.append(f"{title} {ref}: empty expr")
            problems += [f"{title} {ref}: {p}" for p in hard_coded(expr)]
            for metric, braces in SELECTOR.findall(expr):
                for needed in ('namespace=~"$namespace"', 'job=~"$job"'):
                    if needed not in (braces or ""):
                        problems.append(f"{title} {ref}: {metric} is not scoped by {needed}")

    if readme:
        listed = readme_panels(readme)
        titles = [p.get("title") for p in panels(dashboard) if p.get("type") != "row"]
        if listed != titles:
            problems.append(f"{readme}: the panel table lists {listed}, the dashboard has {titles}")
    return [f"{path}: {p}" for p in problems]


def hard_coded(expr: str) -> list[str]:
    """Matchers on namespace or job that are not the template variables."""
    return [
        f"hard-coded {label}{op}\"{value}\" (use {label}=~\"${label}\")"
        for label, op, value in MATCHER.findall(expr)
        if (op, value) not in (("=~", f"${label}"), ("=~", f"${{{label}}}"))
    ]


def readme_panels(path: str) -> list[str]:
    """First-column names of the table between the dashboard-panels markers (`**bold**` or not)."""
    text = open(path, encoding="utf-8").read()
    if START not in text or END not in text:
        return [f"no {START} ... {END} section"]
    table = text.split(START, 1)[1].split(END, 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [row.split("|")[1].strip().strip("*") for row in rows]


def configmap(render: str, dashboard: str, label: str, namespace: str | None) -> list[str]:
    key, _, value = label.partition("=")
    with open(render, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    found = [
        d
        for d in documents
        if d.get("kind") == "ConfigMap" and (d["metadata"].get("labels") or {}).get(key) == value
    ]
    if len(found) != 1:
        return [f"{render}: {len(found)} ConfigMap(s) labelled {key}={value!r}, expected 1"]
    problems = []
    meta = found[0]["metadata"]
    if namespace is not None and meta.get("namespace") != namespace:
        problems.append(f"{meta['name']}: namespace {meta.get('namespace')!r}, expected {namespace!r}")
    data = found[0].get("data") or {}
    with open(dashboard, encoding="utf-8") as handle:
        expected = handle.read()
    if list(data) != ["pg-queue-scaler.json"]:
        problems.append(f"{meta['name']}: data keys {list(data)}, expected ['pg-queue-scaler.json']")
    elif data["pg-queue-scaler.json"].rstrip("\n") != expected.rstrip("\n"):
        problems.append(f"{meta['name']}: pg-queue-scaler.json differs from {dashboard}")
    return [f"{render}: {p}" for p in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lint_args = commands.add_parser("lint")
    lint_args.add_argument("dashboard")
    lint_args.add_argument("--readme")
    map_args = commands.add_parser("configmap")
    map_args.add_argument("render")
    map_args.add_argument("dashboard")
    map_args.add_argument("--label", required=True)
    map_args.add_argument("--namespace")
    args = parser.parse_args()
    if args.command == "lint":
        problems = lint(args.dashboard, args.readme)
    else:
        problems = configmap(args.render, args.dashboard, args.label, args.namespace)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"ok   {args.command} {args.dashboard}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
