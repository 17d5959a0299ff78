#!/usr/bin/env python3
"""Validate custom resources (e.g. KEDA ScaledObject, TriggerAuthentication) against CRDs.

Each CRD's openAPIV3Schema is turned into a JSON Schema and checked with jsonschema, the way
the API server would with strict field validation:
  * objects with declared properties reject unknown fields, unless the schema says
    x-kubernetes-preserve-unknown-fields;
  * `nullable: true` allows null, `x-kubernetes-int-or-string` allows integer or string;
  * metadata must have a valid name and only the usual ObjectMeta fields.
CEL rules (x-kubernetes-validations) are not evaluated, except ScaledObject's
minReplicaCount <= maxReplicaCount, which is checked by hand; the rest are counted and reported.

For external / external-push triggers it also checks the trigger metadata: KEDA's own keys and
what only the manifest shows here, and the scaler's keys by the scaler binary itself
(`pg-queue-scaler --check-trigger`), so that the trigger rules are written once, in Rust.

Usage:
  validate_crd.py --crd-dir DIR --scaler BINARY [--ignore-other-kinds] FILE ...

Prints one line per resource and exits 1 if any resource fails.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import re
import subprocess
import sys

import jsonschema
import yaml

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

METADATA_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

# Keys KEDA itself reads for external scalers; every other key is the scaler's to judge.
KEDA_TRIGGER_KEYS = {"scalerAddress", "enableTLS", "unsafeSsl"}
KEDA_BOOLEANS = {"enableTLS", "unsafeSsl"}
# Metadata keys naming an environment variable of the scaled container: KEDA sends the
# variable's value under the same key, so the scaler is asked about a stand-in value.
ENV_VAR_KEYS = {
    "connectionFromEnv": "postgres://user@resolved-by-keda:5432/db",
    "applicationVersionFromEnv": "resolved-by-keda",
}
UNREAD_PREFIX = "keys pg-queue-scaler does not read: "
# CEL rules re-implemented below, per kind (KEDA v2.20: ScaledObject's min <= max replicas).
HAND_CHECKED_CEL_RULES = {"ScaledObject": 1}


def strict(schema: dict) -> dict:
    """Return a JSON Schema equivalent of a structural OpenAPI v3 schema, rejecting unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node.pop("anyOf", None)
            node["type"] = ["integer", "string"]
        if node.get("nullable") and "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            node["type"] = types + ["null"]
        if (
            node.get("type") == "object"
            and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key, value in list(node.items()):
            if key in ("properties", "patternProperties", "definitions"):
                for child in value.values():
                    walk(child)
            elif key in ("items", "additionalProperties", "not"):
                walk(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                walk(value)

    walk(schema)
    return schema


def count_cel_rules(node) -> int:
    if isinstance(node, dict):
        return len(node.get("x-kubernetes-validations", [])) + sum(count_cel_rules(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_cel_rules(v) for v in node)
    return 0


def load_crds(crd_dir: str) -> dict:
    """(apiVersion, kind) -> (json schema, CEL rule count) for every served version."""
    crds = {}
    paths = sorted(glob.glob(os.path.join(crd_dir, "*.yaml")))
    if not paths:
        sys.exit(f"no CRD files in {crd_dir}")
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for doc in yaml.safe_load_all(handle):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group = doc["spec"]["group"]
                kind = doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    if not version.get("served", False):
                        continue
                    openapi = version["schema"]["openAPIV3Schema"]
                    schema = strict(openapi)
                    schema.setdefault("properties", {})["metadata"] = METADATA_SCHEMA
                    schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
                    schema["properties"]["kind"] = {"const": kind}
                    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
                    jsonschema.Draft7Validator.check_schema(schema)
                    crds[(f"{group}/{version['name']}", kind)] = (schema, count_cel_rules(openapi))
    return crds


def scaler_verdict(scaler: str, metadata: dict) -> list[str]:
    """The scaler binary's own judgement of trigger metadata (`--check-trigger`), so that its
    rules are written once, in Rust: its error, and the keys it does not read."""
    resolved = {key: ENV_VAR_KEYS.get(key, value) for key, value in metadata.items()}
    args = [scaler] + [f"--check-trigger={key}={value}" for key, value in resolved.items()]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    problems = []
    for line in result.stdout.splitlines():
        if line.startswith(UNREAD_PREFIX):
            unknown = [key for key in line[len(UNREAD_PREFIX):].split(", ") if key not in KEDA_TRIGGER_KEYS]
            problems += [f"unknown metadata key {key!r}" for key in unknown]
    if result.returncode != 0:
        problems.append(result.stderr.strip().removeprefix("pg-queue-scaler: "))
    return problems


def check_trigger_metadata(trigger: dict, scaler: str) -> list[str]:
    """Problems with an external/external-push trigger: KEDA's keys and what only the manifest
    shows (metricType, variable names) here; the scaler's keys by the scaler itself."""
    problems = []
    metadata = trigger.get("metadata") or {}
    if not metadata.get("scalerAddress"):
        problems.append("scalerAddress is required")
    elif "://" in metadata["scalerAddress"] or not re.match(r"^[^:]+:[0-9]+$", metadata["scalerAddress"]):
        problems.append(f"scalerAddress {metadata['scalerAddress']!r} must be host:port without a scheme")
    for key in sorted(KEDA_BOOLEANS & metadata.keys()):
        if metadata[key] not in ("true", "false"):
            problems.append(f"{key} must be \"true\" or \"false\", got {metadata[key]!r}")
    for key in sorted(ENV_VAR_KEYS.keys() & metadata.keys()):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(metadata[key])):
            problems.append(f"{key} must name an environment variable, got {metadata[key]!r}")
    if metadata.get("metric") == "latency" and trigger.get("metricType") != "Value":
        problems.append("metric: latency needs metricType: Value (the age of the oldest item is not shared by pods)")
    if trigger.get("metricType") == "Utilization":
        problems.append("metricType Utilization is not supported by external scalers")
    # Non-string values are the schema's to report; the scaler only ever gets strings.
    if all(isinstance(value, str) for value in metadata.values()):
        problems += scaler_verdict(scaler, metadata)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crd-dir", required=True)
    parser.add_argument("--scaler", required=True,
                        help="the pg-queue-scaler binary, which judges the trigger metadata (--check-trigger)")
    parser.add_argument("--ignore-other-kinds", action="store_true",
                        help="skip documents whose kind no CRD defines (instead of failing)")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    crds = load_crds(args.crd_dir)
    failures = 0
    checked = 0
    for path in args.files:
        with open(path, encoding="utf-8") as handle:
            docs = [doc for doc in yaml.safe_load_all(handle) if doc]
        for doc in docs:
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name', '?')}"
            if key not in crds:
                if args.ignore_other_kinds:
                    continue
                print(f"FAIL {path}: {name}: no CRD for {key[0]} {key[1]}")
                failures += 1
                continue
            checked += 1
            schema, cel_rules = crds[key]
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            problems = [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]
            if doc.get("kind") == "ScaledObject":
                # The one CEL rule of KEDA v2.20's ScaledObject, checked by hand.
                spec = doc.get("spec") or {}
                low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
                if isinstance(low, int) and isinstance(high, int) and low > high:
                    problems.append("spec: minReplicaCount must be less than or equal to maxReplicaCount")
                for index, trigger in enumerate((doc.get("spec") or {}).get("triggers") or []):
                    if trigger.get("type") in ("external", "external-push"):
                        problems += [f"spec.triggers.{index}.metadata: {p}" for p in check_trigger_metadata(trigger, args.scaler)]
            if problems:
                failures += 1
                for problem in problems:
                    print(f"FAIL {path}: {name}: {problem}")
            else:
                unchecked = cel_rules - HAND_CHECKED_CEL_RULES.get(doc.get("kind"), 0)
                note = f", {unchecked} CEL rule(s) not evaluated" if unchecked > 0 else ""
                print(f"ok   {path}: {name} (CRD schema, strict{note})")
    if checked == 0 and failures == 0:
        print("FAIL no custom resources found")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
