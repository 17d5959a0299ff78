#!/usr/bin/env python3
"""Validate Kubernetes manifests against the built-in API schemas, strictly.

Uses kubernetes-validate as a library (its bundled schemas, no network). Unlike its CLI, a
kind without a schema is an error here, unless it is named with --skip-kind (for CRD-based
kinds such as ServiceMonitor, which have no built-in schema).

Usage:
  validate_k8s.py [--kubernetes-version 1.33] [--skip-kind KIND ...] FILE|- ...

Prints one line per resource and exits 1 if any resource fails.
"""

from __future__ import annotations

import argparse
import sys

import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv


def load_documents(path: str) -> list[dict]:
    """Every non-empty YAML document in the file (or stdin for "-")."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pick_version(wanted: str) -> str:
    """The wanted version if the bundled schemas have it, else the newest bundled one above it."""
    versions = kv.all_versions()
    wanted_mm = tuple(int(p) for p in kv.major_minor(wanted).split("."))
    candidates = [v for v in versions if tuple(int(p) for p in kv.major_minor(v).split(".")) >= wanted_mm]
    if not candidates:
        sys.exit(f"kubernetes-validate {kv.__version__} has no schemas for Kubernetes >= {wanted}")
    return candidates[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubernetes-version", default="1.33.0")
    parser.add_argument("--skip-kind", action="append", default=[], help="kind to skip (repeatable)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    version = pick_version(args.kubernetes_version)
    skip = set(args.skip_kind)
    failures = 0
    checked = 0
    for path in args.files:
        for doc in load_documents(path):
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                print(f"FAIL {path}: a document without apiVersion/kind")
                failures += 1
                continue
            name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            if doc["kind"] in skip:
                print(f"skip {path}: {name} (CRD-based kind, no built-in schema)")
                continue
            checked += 1
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kv.ValidationError as err:
                where = ".".join(str(p) for p in err.path) or "(root)"
                print(f"FAIL {path}: {name}: {where}: {err.message}")
                failures += 1
            except kv.SchemaNotFoundError as err:
                print(f"FAIL {path}: {name}: {err.message}")
                failures += 1
            else:
                print(f"ok   {path}: {name} (Kubernetes {kv.major_minor(version)}, strict)")
    if checked == 0 and failures == 0:
        print("FAIL nothing was validated")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
