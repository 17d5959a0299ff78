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

For external / external-push triggers it also checks the trigger metadata against the
pg-queue-scaler trigger contract (known keys, enum values, integer fields, durations, keys that
need or exclude each other).

Usage:
  validate_crd.py --crd-dir DIR [--ignore-other-kinds] FILE ...

Prints one line per resource and exits 1 if any resource fails.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import re
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

# The trigger metadata contract of pg-queue-scaler (DESIGN.md, "Trigger metadata"), plus the
# keys KEDA itself reads for external scalers.
KEDA_TRIGGER_KEYS = {"scalerAddress", "enableTLS", "unsafeSsl"}
SCALER_TRIGGER_KEYS = {
    "queue", "queues", "aggregate", "system", "database", "connectionFromEnv", "schema",
    "workerConcurrency", "metric", "activationThreshold", "applicationName",
    "applicationVersion", "applicationVersionFromEnv", "requireApplicationVersion",
    "concurrencyLimits", "delayedLookahead", "targetLatency",
}
ENUMS = {"aggregate": {"max", "sum"}, "system": {"dbos"}, "metric": {"replicas", "depth", "latency"},
         "concurrencyLimits": {"apply", "ignore"}, "requireApplicationVersion": {"true", "false"},
         "enableTLS": {"true", "false"}, "unsafeSsl": {"true", "false"}}
POSITIVE_INTEGERS = {"workerConcurrency"}
# Metadata keys naming an environment variable of the scaled container (KEDA resolves them).
ENV_VAR_KEYS = {"connectionFromEnv", "applicationVersionFromEnv"}
# Duration keys and their bounds in seconds (inclusive), as the scaler accepts them.
DAY = 24 * 60 * 60
DURATIONS = {"delayedLookahead": (0, DAY), "targetLatency": (1, DAY)}
# Units of the duration syntax the scaler parses (Rust humantime), in seconds.
DURATION_UNITS = {
    "nsec": 1e-9, "ns": 1e-9, "usec": 1e-6, "us": 1e-6, "\u00b5s": 1e-6, "msec": 1e-3, "ms": 1e-3,
    "seconds": 1, "second": 1, "sec": 1, "s": 1,
    "minutes": 60, "minute": 60, "min": 60, "m": 60,
    "hours": 3600, "hour": 3600, "hr": 3600, "h": 3600,
    "days": DAY, "day": DAY, "d": DAY, "weeks": 7 * DAY, "week": 7 * DAY, "w": 7 * DAY,
}
# CEL rules re-implemented below, per kind (KEDA v2.20: ScaledObject's min <= max replicas).
HAND_CHECKED_CEL_RULES = {"ScaledObject": 1}
NON_NEGATIVE_NUMBERS = {"activationThreshold"}


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


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as "90s", "1m30s" or "1h 30m"; None if it is not one."""
    parts = re.findall(r"\s*([0-9]+)\s*([a-z\u00b5]+)", text.strip())
    if not parts or re.sub(r"\s*[0-9]+\s*[a-z\u00b5]+", "", text.strip()):
        return None
    if any(unit not in DURATION_UNITS for _, unit in parts):
        return None
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)


def check_trigger_metadata(trigger: dict) -> list[str]:
    """Problems with an external/external-push trigger's metadata under pg-queue-scaler's contract."""
    problems = []
    metadata = trigger.get("metadata") or {}
    if not metadata.get("scalerAddress"):
        problems.append("scalerAddress is required")
    elif "://" in metadata["scalerAddress"] or not re.match(r"^[^:]+:[0-9]+$", metadata["scalerAddress"]):
        problems.append(f"scalerAddress {metadata['scalerAddress']!r} must be host:port without a scheme")
    for key in metadata:
        if key not in KEDA_TRIGGER_KEYS | SCALER_TRIGGER_KEYS:
            problems.append(f"unknown metadata key {key!r}")
    if not (metadata.get("queue") or metadata.get("queues")):
        problems.append("one of queue or queues is required")
    if metadata.get("queue") and metadata.get("queues"):
        problems.append("queue and queues are mutually exclusive")
    if metadata.get("database") and metadata.get("connectionFromEnv"):
        problems.append("database and connectionFromEnv are mutually exclusive")
    for key, allowed in ENUMS.items():
        if key in metadata and metadata[key] not in allowed:
            problems.append(f"{key} must be one of {sorted(allowed)}, got {metadata[key]!r}")
    for key in POSITIVE_INTEGERS:
        if key in metadata and not re.match(r"^[1-9][0-9]*$", str(metadata[key])):
            problems.append(f"{key} must be a positive integer, got {metadata[key]!r}")
    for key in NON_NEGATIVE_NUMBERS:
        if key in metadata and not re.match(r"^[0-9]+(\.[0-9]+)?$", str(metadata[key])):
            problems.append(f"{key} must be a non-negative number, got {metadata[key]!r}")
    if metadata.get("metric") == "depth" and "workerConcurrency" not in metadata:
        problems.append("metric: depth needs workerConcurrency")
    if "database" in metadata and not re.match(r"^[a-z0-9_]+$", metadata["database"]):
        problems.append(f"database must match [a-z0-9_]+, got {metadata['database']!r}")
    for key in sorted(ENV_VAR_KEYS & metadata.keys()):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(metadata[key])):
            problems.append(f"{key} must name an environment variable, got {metadata[key]!r}")
    for key, (low, high) in DURATIONS.items():
        if key not in metadata:
            continue
        seconds = parse_duration(str(metadata[key]))
        if seconds is None:
            problems.append(f"{key} must be a duration like 90s, got {metadata[key]!r}")
        elif not low <= seconds <= high:
            bounds = "at most 24h" if low == 0 else f"from {low}s to 24h"
            problems.append(f"{key} must be {bounds}, got {metadata[key]!r}")
    if metadata.get("metric") == "latency" and "targetLatency" not in metadata:
        problems.append("metric: latency needs targetLatency")
    if metadata.get("metric") == "latency" and trigger.get("metricType") != "Value":
        problems.append("metric: latency needs metricType: Value (the age of the oldest item is not shared by pods)")
    if "targetLatency" in metadata and metadata.get("metric") != "latency":
        problems.append("targetLatency is only used with metric: latency")
    if "applicationVersion" in metadata and "applicationVersionFromEnv" in metadata:
        problems.append("set either applicationVersion or applicationVersionFromEnv, not both")
    if "applicationVersion" in metadata and not str(metadata["applicationVersion"]).strip():
        problems.append("applicationVersion must be a version name or \"latest\"")
    if metadata.get("requireApplicationVersion") == "true" and not (
        "applicationVersion" in metadata or "applicationVersionFromEnv" in metadata
    ):
        problems.append("requireApplicationVersion: \"true\" needs applicationVersion or applicationVersionFromEnv")
    if trigger.get("metricType") == "Utilization":
        problems.append("metricType Utilization is not supported by external scalers")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crd-dir", required=True)
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
                        problems += [f"spec.triggers.{index}.metadata: {p}" for p in check_trigger_metadata(trigger)]
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
