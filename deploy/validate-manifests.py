"""Validates rendered Kubernetes manifests offline; no kind is skipped.

Core kinds: kubernetes-validate's bundled schemas for one Kubernetes version, strict (an unknown field is an error,
as `kubectl apply --validate=strict` would make it). KEDA's kinds (ScaledObject, TriggerAuthentication), which
kubernetes-validate has no schema for: the openAPIV3Schema of KEDA's own CRDs, vendored in deploy/schemas/keda/
(see its README), made strict the same way. A kind with no schema at all is an error, not a warning.

usage: python validate-manifests.py --kubernetes-version 1.33.0 FILE...
prints one line per manifest and a last line "N manifests valid, M invalid"; exits 1 when any is invalid.
"""

import argparse
import copy
import json
import os
import re
import sys

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def strict(schema):
    """An object schema with properties and no say about other keys rejects unknown keys (the API server would
    silently prune them, which hides a misspelt field)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schema(doc):
    group, _, version = doc["apiVersion"].partition("/")
    path = os.path.join(SCHEMAS, group.split(".")[0], "%s-%s-%s.json" % (doc["kind"].lower(), group.split(".")[0], version))
    if not os.path.exists(path):
        return None, path
    with open(path) as f:
        return strict(json.load(f)), path


def check_metadata(doc):
    """CRD schemas leave metadata to the API server; check what it would."""
    name = (doc.get("metadata") or {}).get("name", "")
    if not name or len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return "metadata.name %r is not a DNS subdomain name" % name
    return None


def validate(doc, version):
    """Returns (schema used, error or None)."""
    if doc["apiVersion"].startswith("keda.sh/"):
        schema, path = crd_schema(doc)
        if schema is None:
            return path, "no vendored schema for %s %s" % (doc["apiVersion"], doc["kind"])
        problem = check_metadata(doc)
        if problem:
            return path, problem
        try:
            jsonschema.Draft7Validator(schema).validate(doc)
        except jsonschema.ValidationError as e:
            return path, "%s: %s" % (".".join(str(p) for p in e.absolute_path), e.message)
        return os.path.relpath(path, os.path.dirname(SCHEMAS)), None
    try:
        used = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return "kubernetes %s" % e.version, "%s: %s" % (".".join(str(p) for p in e.path), e.message)
    except kubernetes_validate.SchemaNotFoundError as e:
        return "kubernetes %s" % version, e.message
    return "kubernetes %s strict" % used, None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    valid = invalid = 0
    for file in args.files:
        with open(file) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        if not docs:
            print("INVALID %s: no manifest in it" % file)
            invalid += 1
        for doc in docs:
            what = "%s/%s" % (doc.get("kind", "?"), (doc.get("metadata") or {}).get("name", "?"))
            schema, error = validate(doc, args.kubernetes_version)
            if error:
                print("INVALID %s %s (%s): %s" % (file, what, schema, error))
                invalid += 1
            else:
                print("ok %s %s (%s)" % (file, what, schema))
                valid += 1
    print("%d manifests valid, %d invalid" % (valid, invalid))
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
