"""The data audit reaches SFTDataset.status intact: termination message, CRD schema, status."""

from __future__ import annotations

import json
from pathlib import Path

from kubesft.api import SFT_DATASET
from kubesft.api.dataset import SFTDatasetSpec
from kubesft.api.report import PrepareTermination, TrainerReason, parse_termination
from kubesft.operator.kube import Kube
from kubesft_trainer.prepare import prepare_dataset
from kubesft_trainer.termination import fit_termination_message
from tests.support.cluster_objects import create
from tests.support.invalid_manifests import valid_dataset


def qa(prompt: str, answer: str) -> dict[str, object]:
    turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": turns}


def test_audit_findings_survive_the_termination_message_and_the_crd(
    kube: Kube, tmp_path: Path, namespace: str
) -> None:
    rows = [qa(f"Question {i}?", f"Answer number {i} in a few words.") for i in range(40)]
    rows += [qa("question 3?", "answer NUMBER 3 in a few words.")]  # row 41: near-duplicate
    rows += [qa(f"Question {i}?", "A different answer.") for i in range(30)]  # contradictions
    rows += [qa(f"Yes or no {i}?", "yes") for i in range(30)]  # short answers
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = SFTDatasetSpec.model_validate({"source": {"configMap": {"name": "data"}}})
    prepared = prepare_dataset(spec, tmp_path / "out", source_path=source)
    done = PrepareTermination(
        phase="Ready", reason=TrainerReason.PREPARED, stats=prepared.stats, fingerprint="f" * 64
    )
    text = fit_termination_message(done)
    parsed = parse_termination(text, PrepareTermination)
    assert parsed is not None and not parsed.truncated and parsed.stats is not None
    audit = parsed.stats.model_dump(by_alias=True, mode="json", exclude_none=True)["audit"]
    assert audit["nearDuplicates"]["rows"] == [41]
    # Questions 0-29 each have two answers: rows 1-30, 42-71, and row 41 (question 3 again).
    assert audit["contradictions"]["count"] == 30 + 30 + 1
    assert audit["shortAnswers"]["count"] == 30

    create(kube, namespace, valid_dataset())
    stats = parsed.stats.model_dump(by_alias=True, mode="json", exclude_none=True)
    kube.patch_status(SFT_DATASET.plural, namespace, "valid-dataset", {"stats": stats})
    stored = (kube.get_custom(SFT_DATASET.plural, namespace, "valid-dataset") or {})["status"]
    assert stored["stats"]["audit"] == audit
