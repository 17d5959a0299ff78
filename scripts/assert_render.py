#!/usr/bin/env python3
"""Assertions about `helm template` output, used by scripts/check-chart.sh.

Usage: assert_render.py ASSERTION [ARGS...] FILE [FILE...]

  count KIND N FILE                resources of KIND in FILE == N
  no-inline-url FILE               no Secret rendered, no postgres:// anywhere, database URLs only via secretKeyRef
  grace FILE                       terminationGracePeriodSeconds > PGQS_SHUTDOWN_GRACE_PERIOD
  probes grpc|http FILE            liveness/readiness probe kind (grpc uses services liveness/readiness)
  dns-names FULLNAME NS FILE       the Certificate covers the Service's in-cluster names
  hardened FILE                    pod and container security settings are the chart's secure defaults
  env-secret NAME SECRET KEY FILE  env NAME comes from secretKeyRef SECRET/KEY
  spread FILE                      a hostname topology spread selecting the pods is present
  same-selector FILE               Deployment, Service, PDB and ServiceMonitor select exactly the two selector labels
  config-roll FILE_A FILE_B        the pods' checksum/config annotation differs between the two renders
  config KEY JSON FILE             the ConfigMap's config.yaml has KEY (dotted) equal to JSON

Exits 1 with a message when the assertion does not hold.
"""

from __future__ import annotations

import json
import re
import sys

import yaml

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def load(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        fail(f"expected one {kind}, found {len(found)}")
    return found[0]


def container(docs: list[dict]) -> dict:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(docs: list[dict]) -> dict:
    return {e["name"]: e for e in container(docs).get("env", [])}


def millis(text: str) -> int:
    parts = re.findall(r"([0-9]+)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        fail(f"cannot parse duration {text!r}")
    return sum(int(n) * UNITS_MS[u] for n, u in parts)


def fail(message: str):
    print(f"assertion failed: {message}")
    sys.exit(1)


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    name, args = sys.argv[1], sys.argv[2:]

    if name == "count":
        kind, expected, path = args
        got = sum(1 for d in load(path) if d.get("kind") == kind)
        if got != int(expected):
            fail(f"{path}: {got} {kind} resource(s), expected {expected}")

    elif name == "no-inline-url":
        (path,) = args
        text = open(path, encoding="utf-8").read()
        docs = load(path)
        if re.search(r"postgres(ql)?://", text):
            fail(f"{path}: a postgres:// URL appears in the render")
        if any(d.get("kind") == "Secret" for d in docs):
            fail(f"{path}: the chart rendered a Secret")
        for var, entry in env(docs).items():
            if (var == "PGQS_DATABASE_URL" or var.startswith("PGQS_DATABASES__")) and "secretKeyRef" not in entry.get("valueFrom", {}):
                fail(f"{path}: {var} is not read from a Secret")

    elif name == "grace":
        (path,) = args
        docs = load(path)
        termination = one(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        grace = env(docs)["PGQS_SHUTDOWN_GRACE_PERIOD"]["value"]
        if not termination * 1000 > millis(grace):
            fail(f"{path}: terminationGracePeriodSeconds {termination} is not above shutdown grace {grace}")

    elif name == "probes":
        mode, path = args
        c = container(load(path))
        live, ready = c["livenessProbe"], c["readinessProbe"]
        if mode == "grpc":
            port = next(p["containerPort"] for p in c["ports"] if p["name"] == "grpc")
            if live.get("grpc") != {"port": port, "service": "liveness"} or ready.get("grpc") != {"port": port, "service": "readiness"}:
                fail(f"{path}: expected grpc probes with services liveness/readiness on port {port}: {live} {ready}")
        elif mode == "http":
            if live.get("httpGet") != {"path": "/healthz", "port": "http"} or ready.get("httpGet") != {"path": "/readyz", "port": "http"}:
                fail(f"{path}: expected httpGet /healthz and /readyz on port http: {live} {ready}")
        else:
            fail(f"unknown probe mode {mode}")

    elif name == "dns-names":
        fullname, namespace, path = args
        names = set(one(load(path), "Certificate")["spec"]["dnsNames"])
        wanted = {f"{fullname}.{namespace}.svc.cluster.local", f"{fullname}.{namespace}.svc"}
        if not wanted <= names:
            fail(f"{path}: Certificate dnsNames {sorted(names)} lack {sorted(wanted - names)}")

    elif name == "hardened":
        (path,) = args
        docs = load(path)
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        checks = {
            "pod runAsNonRoot": pod.get("securityContext", {}).get("runAsNonRoot") is True,
            "pod seccomp RuntimeDefault": pod.get("securityContext", {}).get("seccompProfile", {}).get("type") == "RuntimeDefault",
            "automountServiceAccountToken false": pod.get("automountServiceAccountToken") is False,
            "enableServiceLinks false": pod.get("enableServiceLinks") is False,
            "allowPrivilegeEscalation false": c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
            "readOnlyRootFilesystem": c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
            "drop ALL": c.get("securityContext", {}).get("capabilities", {}).get("drop") == ["ALL"],
            "default-container annotation": pod is not None
            and one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"].get("kubectl.kubernetes.io/default-container") == c["name"],
            "resources.requests set": bool(c.get("resources", {}).get("requests")),
        }
        for sa in (d for d in docs if d.get("kind") == "ServiceAccount"):
            checks["ServiceAccount automount false"] = sa.get("automountServiceAccountToken") is False
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            fail(f"{path}: not hardened: {', '.join(bad)}")

    elif name == "env-secret":
        var, secret, key, path = args
        entry = env(load(path)).get(var)
        ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef")
        if ref != {"name": secret, "key": key}:
            fail(f"{path}: env {var} is {entry}, expected secretKeyRef {secret}/{key}")

    elif name == "spread":
        (path,) = args
        deployment = one(load(path), "Deployment")
        selector = deployment["spec"]["selector"]["matchLabels"]
        constraints = deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not any(c.get("topologyKey") == "kubernetes.io/hostname" and c.get("labelSelector", {}).get("matchLabels") == selector for c in constraints):
            fail(f"{path}: no hostname topology spread selecting {selector}: {constraints}")

    elif name == "same-selector":
        (path,) = args
        docs = load(path)
        deployment = one(docs, "Deployment")
        selector = deployment["spec"]["selector"]["matchLabels"]
        if set(selector) != {"app.kubernetes.io/name", "app.kubernetes.io/instance"}:
            fail(f"{path}: selector labels are {sorted(selector)}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in selector.items()):
            fail(f"{path}: pod labels {labels} do not carry the selector {selector}")
        for d in docs:
            other = {
                "Service": lambda d: d["spec"]["selector"],
                "PodDisruptionBudget": lambda d: d["spec"]["selector"]["matchLabels"],
                "ServiceMonitor": lambda d: d["spec"]["selector"]["matchLabels"],
                "NetworkPolicy": lambda d: d["spec"]["podSelector"]["matchLabels"],
            }.get(d.get("kind"))
            if other and other(d) != selector:
                fail(f"{path}: {d['kind']} selects {other(d)}, not {selector}")

    elif name == "config-roll":
        path_a, path_b = args
        a, b = (one(load(p), "Deployment")["spec"]["template"]["metadata"]["annotations"].get("checksum/config") for p in (path_a, path_b))
        if not a or a == b:
            fail(f"checksum/config did not change between {path_a} and {path_b} ({a})")

    elif name == "config":
        key, expected, path = args
        # The scaler's ConfigMap is the one holding config.yaml (the dashboard's holds JSON).
        scaler_maps = [d for d in load(path) if "config.yaml" in (d.get("data") or {})]
        config = yaml.safe_load(one(scaler_maps, "ConfigMap")["data"]["config.yaml"])
        value = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value != json.loads(expected):
            fail(f"{path}: config.yaml {key} is {value!r}, expected {expected}")

    else:
        sys.exit(f"unknown assertion {name}\n{__doc__}")


if __name__ == "__main__":
    main()
