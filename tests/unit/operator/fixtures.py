"""Parsed SFTJob/SFTDataset objects and observed Jobs for operator unit tests."""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import SFTDataset, SFTJob, parse_object
from kubesft.api.base import PVCLocation
from kubesft.operator.config import OperatorConfig
from kubesft.operator.observe import ObservedJob, Termination
from kubesft.operator.trainer_data import DatasetInput, TrainerInputs
from tests.support.invalid_manifests import valid_dataset, valid_job


def job(**spec: Any) -> SFTJob:
    obj = valid_job("demo")
    obj["metadata"].update(namespace="team", uid="uid-1", generation=1)
    obj["spec"].update(spec)
    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}  # None: unset
    parsed = parse_object(obj)
    assert isinstance(parsed, SFTJob)
    return parsed


def dataset(
    status: dict[str, Any] | None = None, generation: int = 1, name: str = "quickstart"
) -> SFTDataset:
    obj = valid_dataset(name)
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


def mixture_job(**spec: Any) -> SFTJob:
    """A job over chat (0.6), code (0.35) and general-text (0.05), scoring retention on
    `held`."""
    members = [
        {"name": "chat", "weight": 0.6},
        {"name": "code", "weight": 0.35},
        {"name": "general-text", "weight": 0.05},
    ]
    evaluation = {"retention": {"name": "held", "threshold": 0.1}, **spec.pop("evaluation", {})}
    return job(dataset=None, datasets=members, evaluation=evaluation, **spec)


def ready(name: str, claim: str = "kubesft-data", **status: Any) -> SFTDataset:
    """A Ready SFTDataset `name` prepared at pvc://<claim>/datasets/<name>/g1."""
    location = f"pvc://{claim}/datasets/{name}/g1"
    return dataset({**READY, "location": location, "fingerprint": f"fp-{name}", **status}, 1, name)


def inputs() -> TrainerInputs:
    location = PVCLocation(claim_name="kubesft-data", path="datasets/quickstart/g1")
    return TrainerInputs(
        datasets=(DatasetInput("quickstart", location, "abc"),),
        config=OperatorConfig(trainer_image="trainer:test"),
    )


def ended(exit_code: int, reason: str = "", message: Any = "", pod: str = "p1") -> Termination:
    text = message if isinstance(message, str) else json.dumps(message)
    return Termination(pod, exit_code, reason, text, "2026-01-01T00:00:10Z")


def observed(**kw: Any) -> ObservedJob:
    return ObservedJob(suspended=kw.pop("suspended", False), **kw)
