"""The checked-in CRDs are generated from kubesft.api and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubesft.crd import build_crds, render_crds

ROOT = Path(__file__).resolve().parents[3]


def test_checked_in_crds_match_the_models() -> None:
    rendered = render_crds()
    on_disk = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert on_disk == rendered, "crds/ is stale: run `make crds` (kubesft crds --write)"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out += _walk(value, f"{path}.{key}")
        if "items" in node:
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schemas_are_structural() -> None:
    for crd in build_crds():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
            if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(
                node["exclusiveMinimum"], bool
            ):
                raise AssertionError(f"{path}: exclusiveMinimum must be a boolean in CRDs")


def test_names_columns_and_status_subresource() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in build_crds()}
    job, ds = crds["SFTJob"], crds["SFTDataset"]
    assert job["spec"]["names"]["shortNames"] == ["sftj"]
    assert ds["spec"]["names"]["shortNames"] == ["sftds"]
    for crd in (job, ds):
        assert crd["spec"]["names"]["categories"] == ["sft"]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}

    def columns(crd: dict[str, Any]) -> list[str]:
        cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        return [c["name"] for c in cols if not c.get("priority")]

    assert columns(job) == ["Phase", "Progress", "Loss", "Eval", "Age"]
    assert columns(ds) == ["Phase", "Rows", "Age"]


def test_cel_rules_are_emitted() -> None:
    rules = [
        rule["rule"]
        for crd in build_crds()
        for _, node in _walk(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert "[has(self.hf), has(self.url), has(self.pvc), has(self.configMap)]" in " ".join(rules)
    assert "!has(self.qlora) || (has(self.type) ? self.type : \"lora\") == 'qlora'" in rules
    assert any("oldSelf.spec.method" in r for r in rules)


def test_api_reference_is_generated_and_in_sync() -> None:
    from kubesft.crd.reference import render_reference

    text = render_reference()
    assert (ROOT / "docs" / "api-reference.md").read_text() == text, "run `make crds`"
    for field in ("spec.training.lossOn", "spec.method.qlora.quantType", "status.progress.percent"):
        assert f"`{field}`" in text
