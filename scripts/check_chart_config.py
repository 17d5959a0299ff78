#!/usr/bin/env python3
"""Checks that the scaler binary accepts what the chart renders.

For a rendered manifest file: takes the ConfigMap's config.yaml and the scaler container's
environment from the Deployment (values from Secrets become placeholder URLs, values from the
downward API or ConfigMaps are skipped), and runs `pg-queue-scaler --check-config` with exactly
that configuration. Exits with the binary's exit code, printing its output.

Usage: check_chart_config.py RENDERED.yaml BINARY
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import yaml

PLACEHOLDER_URL = "postgres://scaler:placeholder@db.example.internal:5432/app_dbos_sys"
CONFIG_PATH_IN_POD = "/etc/pg-queue-scaler/config.yaml"


def main() -> int:
    rendered, binary = sys.argv[1], sys.argv[2]
    with open(rendered, encoding="utf-8") as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc]
    # The scaler's ConfigMap is the one holding config.yaml (the dashboard's holds JSON).
    config_maps = [
        d
        for d in documents
        if d.get("kind") == "ConfigMap" and "config.yaml" in (d.get("data") or {})
    ]
    deployments = [d for d in documents if d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        print(f"expected one Deployment, found {len(deployments)}", file=sys.stderr)
        return 2
    container = next(
        c
        for c in deployments[0]["spec"]["template"]["spec"]["containers"]
        if c["name"] == "pg-queue-scaler"
    )
    env = {"PATH": os.environ.get("PATH", "")}
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        elif "secretKeyRef" in variable.get("valueFrom", {}):
            env[variable["name"]] = PLACEHOLDER_URL
    with tempfile.TemporaryDirectory() as work:
        if env.get("PGQS_CONFIG") == CONFIG_PATH_IN_POD:
            if len(config_maps) != 1:
                print("PGQS_CONFIG is set but there is no single ConfigMap", file=sys.stderr)
                return 2
            path = os.path.join(work, "config.yaml")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(config_maps[0]["data"]["config.yaml"])
            env["PGQS_CONFIG"] = path
        result = subprocess.run(
            [binary, "--check-config"], env=env, capture_output=True, text=True, timeout=30
        )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
