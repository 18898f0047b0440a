"""Assemble the CustomResourceDefinitions and write them to ``crds/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubesft.api.base import MAX_OBJECT_NAME
from kubesft.api.job import MUTABLE_UNTIL_FINISHED, immutable_after_start
from kubesft.api.resource import (
    KINDS,
    MULTI_NODE_NAME_MESSAGE,
    MULTI_NODE_NAME_RULE,
    SFT_DATASET,
    SFT_JOB,
    Kind,
)
from kubesft.crd.schema import structural_schema

PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    SFT_JOB.kind: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Progress",
            "type": "string",
            "jsonPath": ".status.progress.percent",
            "description": "Percent of optimizer steps done",
        },
        {"name": "Loss", "type": "number", "jsonPath": ".status.metrics.trainLoss"},
        {"name": "Eval", "type": "number", "jsonPath": ".status.metrics.evalLoss"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "priority": 1},
        {"name": "Method", "type": "string", "jsonPath": ".spec.method.type", "priority": 1},
        {"name": "Dataset", "type": "string", "jsonPath": ".spec.dataset.name", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    SFT_DATASET.kind: [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.stats.rows"},
        {"name": "Train", "type": "integer", "jsonPath": ".status.stats.train", "priority": 1},
        {"name": "Eval", "type": "integer", "jsonPath": ".status.stats.eval", "priority": 1},
        {"name": "Format", "type": "string", "jsonPath": ".status.stats.format", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}


def _name_rule() -> dict[str, str]:
    return {
        "rule": f"size(self.metadata.name) <= {MAX_OBJECT_NAME}",
        "message": f"metadata.name must be at most {MAX_OBJECT_NAME} characters "
        "(names of the Jobs and pods it creates derive from it)",
    }


def _same(field: str) -> str:
    return (
        f"has(self.spec.{field}) == has(oldSelf.spec.{field}) && "
        f"(!has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field})"
    )


STARTED = "has(oldSelf.status) && has(oldSelf.status.startTime)"
FINISHED = f"{STARTED} && has(oldSelf.status.completionTime)"


def _immutable_rule(field: str) -> dict[str, str]:
    """Transition rule: ``spec.<field>`` is fixed once the job has started."""
    return {
        "rule": f"!({STARTED}) || ({_same(field)})",
        "message": f"spec.{field} cannot change after the job started: the running trainer "
        "was built from it. To train with the new value, create a new SFTJob with a new "
        "metadata.name and a new spec.output location (an output holds one run's checkpoints)",
        "fieldPath": f".spec.{field}",
    }


def _fixed_when_finished_rule(field: str) -> dict[str, str]:
    """Transition rule: ``spec.<field>`` (copied onto the trainer Job) is fixed once done."""
    return {
        "rule": f"!({FINISHED}) || ({_same(field)})",
        "message": f"spec.{field} cannot change after the job finished (it acts on the "
        "trainer Job while it runs); delete the SFTJob to remove what is left",
        "fieldPath": f".spec.{field}",
    }


def _object_schema(kind: Kind) -> dict[str, Any]:
    rules = [_name_rule()]
    if kind is SFT_JOB:
        rules.append({"rule": MULTI_NODE_NAME_RULE, "message": MULTI_NODE_NAME_MESSAGE})
        rules += [_immutable_rule(f) for f in immutable_after_start()]
        rules += [_fixed_when_finished_rule(f) for f in MUTABLE_UNTIL_FINISHED]
    return {
        "type": "object",
        "description": (kind.model.__doc__ or kind.kind).strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # The one metadata restriction CRDs may declare; it also bounds CEL's cost
            # estimates of rules that read the name.
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": MAX_OBJECT_NAME}},
            },
            "spec": structural_schema(kind.spec),
            "status": structural_schema(kind.status),
        },
        "x-kubernetes-validations": rules,
    }


def build_crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": kind.group,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": kind.version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _object_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS[kind.kind],
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    return [build_crd(k) for k in KINDS]


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated sub-objects out in full: CRD readers do not expect YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crds() -> dict[str, str]:
    """File name → YAML text, exactly as checked in under ``crds/``."""
    header = "# Generated by `kubesft crds` from kubesft.api; do not edit by hand.\n"
    return {
        f"{crd['metadata']['name']}.yaml": header
        + yaml.dump(crd, Dumper=_NoAliasDumper, sort_keys=False, width=100, allow_unicode=True)
        for crd in build_crds()
    }


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
