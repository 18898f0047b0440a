"""Parsed SFTJob/SFTDataset objects and observed Jobs for operator unit tests."""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import SFTDataset, SFTJob, parse_object
from kubesft.api.base import PVCLocation
from kubesft.operator.build_trainer import TrainerInputs
from kubesft.operator.config import OperatorConfig
from kubesft.operator.observe import ObservedJob, Termination
from tests.support.invalid_manifests import valid_dataset, valid_job


def job(**spec: Any) -> SFTJob:
    obj = valid_job("demo")
    obj["metadata"].update(namespace="team", uid="uid-1", generation=1)
    obj["spec"].update(spec)
    parsed = parse_object(obj)
    assert isinstance(parsed, SFTJob)
    return parsed


def dataset(status: dict[str, Any] | None = None, generation: int = 1) -> SFTDataset:
    obj = valid_dataset("quickstart")
    obj["metadata"].update(namespace="team", uid="uid-2", generation=generation)
    if status is not None:
        obj["status"] = status
    parsed = parse_object(obj)
    assert isinstance(parsed, SFTDataset)
    return parsed


READY = {
    "phase": "Ready",
    "observedGeneration": 1,
    "location": "pvc://kubesft-data/datasets/quickstart/g1",
}


def inputs() -> TrainerInputs:
    return TrainerInputs(
        dataset=PVCLocation(claim_name="kubesft-data", path="datasets/quickstart/g1"),
        dataset_fingerprint="abc",
        config=OperatorConfig(trainer_image="trainer:test"),
    )


def ended(exit_code: int, reason: str = "", message: Any = "", pod: str = "p1") -> Termination:
    text = message if isinstance(message, str) else json.dumps(message)
    return Termination(pod, exit_code, reason, text, "2026-01-01T00:00:10Z")


def observed(**kw: Any) -> ObservedJob:
    return ObservedJob(suspended=kw.pop("suspended", False), **kw)
