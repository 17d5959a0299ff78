#!/usr/bin/env python3
"""The query side of tests/prometheus.rs: turns the chart's rendered PrometheusRule into a
Prometheus rule file, and evaluates the Grafana dashboard's and the alerts' PromQL against a
real Prometheus through its HTTP API. The Rust test owns the real parts (Postgres with a DBOS
schema, the scaler, Prometheus, helm, promtool); this script only reads JSON and YAML, which
the Rust test crate has no parser for (and takes no dependency for). It needs PyYAML, which
the pinned dbos in tests/e2e/requirements.txt brings into the test venv.

  rules RENDER OUT
      RENDER is `helm template --show-only templates/prometheusrule.yaml` output: writes its one
      PrometheusRule's spec (the `groups:`) to OUT, the file format of promtool and Prometheus.

  evaluate --prometheus URL --dashboard JSON --rules RULES [--var NAME=VALUE ...]
           [--rate-interval 15s] [--alerting LABEL=VALUE]
      1. Template variables, in dashboard order: each `label_values(SELECTOR, LABEL)` query is
         run (earlier variables substituted) through /api/v1/series and must return values.
         A single-value variable takes its --var value, which must be among them; a
         multi-value variable takes them all, as Grafana's "All" does (`(a|b)`), and must
         include its --var value(s) if given.
      2. Every panel query (variables and $__rate_interval substituted) must return at least
         one series, and every label the query groups `by (...)` and its legend shows
         (`{{label}}`) must be on some series: a misspelt metric, matcher or label fails.
      3. Every alert expression, exactly as rendered (comparison included), must return at
         least one series, and with --alerting LABEL=VALUE every series must have that label
         value: the test breaks one database on purpose, so the alerts must hold for it and
         for nothing else. Prometheus loaded the same rules file, so /api/v1/rules must show
         every rule healthy and every alert pending or firing for that database only.
      Prints one line per query; exits 1 listing every failure.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request

import yaml

LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)$")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def rules(render: str, out: str) -> int:
    with open(render, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    found = [d for d in documents if d.get("kind") == "PrometheusRule"]
    if len(found) != 1:
        print(f"{render}: {len(found)} PrometheusRule(s), expected 1", file=sys.stderr)
        return 1
    with open(out, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"groups": found[0]["spec"]["groups"]}, handle, sort_keys=False, width=1000)
    return 0


class Prometheus:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def get(self, path: str, params: list[tuple[str, str]]):
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def instant(self, expr: str) -> list[dict]:
        data = self.get("/api/v1/query", [("query", expr)])
        if data["resultType"] != "vector":
            raise RuntimeError(f"{expr}: a {data['resultType']}, not a vector")
        return data["result"]


def regex_escape(value: str) -> str:
    """A value as Grafana puts it into a PromQL regex matcher: regex metacharacters escaped
    with a backslash that is itself escaped for the PromQL string (Grafana's
    prometheusRegularEscape)."""
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\\\1", value)


def substitute(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    if "$" in expr:
        raise RuntimeError(f"unsubstituted variable in {expr}")
    return expr


def resolve_variables(prom: Prometheus, dashboard: dict, wanted: dict[str, list[str]], failures: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "datasource":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = LABEL_VALUES.match(text.strip())
        if not match:
            failures.append(f"variable {name}: not label_values(SELECTOR, LABEL): {text}")
            values[name] = "__unresolved__"
            continue
        selector = substitute(match["selector"], values)
        series = prom.get("/api/v1/series", [("match[]", selector)])
        found = sorted({s[match["label"]] for s in series if s.get(match["label"])})
        want = wanted.get(name, [])
        print(f"variable {name}: {text} -> {found}")
        missing = [w for w in want if w not in found]
        if not found or missing:
            failures.append(f"variable {name}: {selector} gave {match['label']} values {found}, expected {want or 'some'}")
        if variable.get("multi") or variable.get("includeAll"):
            chosen = found or want
            values[name] = "(" + "|".join(regex_escape(v) for v in chosen) + ")"
        else:
            values[name] = regex_escape(want[0] if want else (found[0] if found else ""))
    return values


def labels_needed(expr: str, legend: str) -> set[str]:
    needed = {label.strip() for group in BY.findall(expr) for label in group.split(",") if label.strip()}
    needed.discard("le")  # consumed by histogram_quantile
    return needed | set(LEGEND.findall(legend or ""))


def evaluate(args) -> int:
    prom = Prometheus(args.prometheus)
    failures: list[str] = []
    with open(args.dashboard, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    wanted: dict[str, list[str]] = {}
    for pair in args.var:
        name, _, value = pair.partition("=")
        wanted.setdefault(name, []).append(value)
    values = resolve_variables(prom, dashboard, wanted, failures)
    values["__rate_interval"] = args.rate_interval

    panels = [p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]]
    for panel in panels:
        for target in panel.get("targets", []):
            name = f"panel {panel['title']!r} {target['refId']}"
            try:
                expr = substitute(target["expr"], values)
                result = prom.instant(expr)
            except Exception as error:  # noqa: BLE001 (reported, not hidden)
                failures.append(f"{name}: {error}")
                continue
            needed = labels_needed(target["expr"], target.get("legendFormat", ""))
            # Some series may lack a label legitimately (version-less work has an empty
            # application_version, which Prometheus drops); a misspelt one is on none.
            present = {k for s in result for k, v in s["metric"].items() if v}
            print(f"{name}: {len(result)} series")
            if not result:
                failures.append(f"{name}: no series for {expr}")
            elif needed - present:
                failures.append(f"{name}: no series has the labels {sorted(needed - present)}: {result}")

    with open(args.rules, encoding="utf-8") as handle:
        groups = yaml.safe_load(handle)["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    if not alerts:
        failures.append(f"{args.rules}: no alerts")
    label, _, value = (args.alerting or "").partition("=")
    for rule in alerts:
        name = f"alert {rule['alert']}"
        try:
            result = prom.instant(rule["expr"])
        except Exception as error:  # noqa: BLE001
            failures.append(f"{name}: {error}")
            continue
        print(f"{name}: {len(result)} series {[s['metric'] for s in result]}")
        if not result:
            failures.append(f"{name}: no series for {rule['expr']}")
        elif args.alerting and any(s["metric"].get(label) != value for s in result):
            failures.append(f"{name}: holds for series other than {label}={value}: {result}")

    if args.alerting:
        loaded = prom.get("/api/v1/rules", [("type", "alert")])
        states = {}
        for group in loaded["groups"]:
            for rule in group["rules"]:
                if rule.get("health") != "ok":
                    failures.append(f"Prometheus rule {rule['name']}: health {rule.get('health')} {rule.get('lastError')}")
                states[rule["name"]] = rule.get("alerts", [])
        for rule in alerts:
            active = states.get(rule["alert"])
            if active is None:
                failures.append(f"Prometheus did not load {rule['alert']}")
                continue
            print(f"Prometheus alert {rule['alert']}: {[(a['state'], a['labels'].get(label)) for a in active]}")
            if not active or any(a["labels"].get(label) != value for a in active):
                failures.append(f"Prometheus alert {rule['alert']}: active {active}, expected only {label}={value}")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    rules_args = commands.add_parser("rules")
    rules_args.add_argument("render")
    rules_args.add_argument("out")
    evaluate_args = commands.add_parser("evaluate")
    evaluate_args.add_argument("--prometheus", required=True)
    evaluate_args.add_argument("--dashboard", required=True)
    evaluate_args.add_argument("--rules", required=True)
    evaluate_args.add_argument("--var", action="append", default=[])
    evaluate_args.add_argument("--rate-interval", default="15s")
    evaluate_args.add_argument("--alerting")
    args = parser.parse_args()
    if args.command == "rules":
        return rules(args.render, args.out)
    return evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
