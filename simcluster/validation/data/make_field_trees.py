"""Regenerate ``kubevirt-v1.5.2-fields.json``: which fields each KubeVirt CRD's structural schema
declares, so the simulated API server can tell unknown fields (``fieldValidation``) the way
kube-apiserver's pruning does. Not imported at run time.

    git -C <kubevirt clone> show v1.5.2:pkg/virt-operator/resource/generate/components/validations_generated.go \\
        > /tmp/validations_generated.go
    uv run python simcluster/validation/data/make_field_trees.py /tmp/validations_generated.go

The output keeps only structure: for an object, its property names (``p``) or the schema of its
additional properties (``a``); for an array, its items (``i``); ``x`` where
``x-kubernetes-preserve-unknown-fields`` keeps whatever is there; ``0`` for a scalar. Types,
descriptions and validations are dropped (the simulator checks those elsewhere).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

KINDS = ("virtualmachine", "virtualmachineinstance", "virtualmachineinstancemigration", "kubevirt")


def tree(node: dict[str, Any]) -> Any:
    out: dict[str, Any] = {}
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out["x"] = 1
    props = node.get("properties")
    if props:
        out["p"] = {k: tree(v) for k, v in sorted(props.items())}
    if isinstance(node.get("additionalProperties"), dict):
        out["a"] = tree(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        out["i"] = tree(node["items"])
    if out:
        return out
    if node.get("type") == "object":
        return {"p": {}}  # an object with no declared fields: pruning drops anything inside it
    return 0  # a scalar (int-or-string quantities included)


def main(src: str) -> None:
    text = Path(src).read_text()
    result: dict[str, Any] = {}
    for kind in KINDS:
        m = re.search(rf'\n\t"{kind}": `(.*?)`,\n', text, re.S)
        assert m, kind
        schema = yaml.safe_load(m.group(1))["openAPIV3Schema"]
        result[kind] = tree(schema)
    out = Path(__file__).with_name("kubevirt-v1.5.2-fields.json")
    out.write_text(json.dumps(result, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
