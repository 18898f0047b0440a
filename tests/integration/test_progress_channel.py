"""The trainer's progress channel on the real apiserver: its own SFTJob and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubesft.api import SFT_JOB
from kubesft.api.report import TrainerReport, TrainerTermination
from kubesft.operator.kube import Kube
from kubesft.operator.reconcile_job import reconcile_job
from kubesft_trainer.kube_status import KubeStatusSink
from tests.support.cluster_objects import CONFIG, create, make_dataset_ready, sft_job
from tests.support.invalid_manifests import valid_dataset


def _sink(kube: Kube, tmp_path: Path, namespace: str, job: str, account: str) -> KubeStatusSink:
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    token = kube.core.create_namespaced_service_account_token(account, namespace, request)
    token_path = tmp_path / f"{account}.token"
    token_path.write_text(token.status.token)
    conf = kube.api.configuration
    return KubeStatusSink(namespace, job, conf.host, token_path, Path(conf.ssl_ca_cert))


def test_trainer_sink_patches_its_own_status_only(
    kube: Kube,
    tmp_path: Path,
    namespace: str,
) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    for name in ("mine", "other"):
        create(kube, namespace, sft_job(namespace, name))
        reconcile_job(kube, CONFIG, namespace, name)
    report = TrainerTermination.model_validate(  # only its TrainerReport fields are sent
        {
            "phase": "Failed",
            "reason": "TrainingError",
            "progress": {"step": 7, "totalSteps": 20, "percent": 35},
            "metrics": {"trainLoss": 1.5},
        }
    )
    _sink(kube, tmp_path, namespace, "mine", "mine-trainer").send(report)
    status = (kube.get_custom(SFT_JOB.plural, namespace, "mine") or {})["status"]
    assert status["progress"]["percent"] == 35 and status["metrics"]["trainLoss"] == 1.5
    assert status["phase"] == "Queued"  # the operator's fields are untouched
    with pytest.raises(RuntimeError, match="HTTP 403"):
        _sink(kube, tmp_path, namespace, "other", "mine-trainer").send(report)


def test_reported_eval_history_becomes_the_overfitting_condition(
    kube: Kube,
    tmp_path: Path,
    namespace: str,
) -> None:
    create(kube, namespace, valid_dataset())
    make_dataset_ready(kube, namespace)
    create(kube, namespace, sft_job(namespace, "fits"))
    reconcile_job(kube, CONFIG, namespace, "fits")
    losses = [(2.0, 1.5), (1.6, 1.6), (1.2, 1.7), (0.9, 1.8)]  # (train, eval) per evaluation
    history = [
        {"step": 10 * i, "trainLoss": train, "evalLoss": ev} for i, (train, ev) in enumerate(losses)
    ]
    report = TrainerReport.model_validate({"metrics": {"evalHistory": history}})
    _sink(kube, tmp_path, namespace, "fits", "fits-trainer").send(report)
    reconcile_job(kube, CONFIG, namespace, "fits")
    status = (kube.get_custom(SFT_JOB.plural, namespace, "fits") or {})["status"]
    assert status["metrics"]["evalHistory"] == history  # the CRD schema keeps every field
    condition = next(c for c in status["conditions"] if c["type"] == "Overfitting")
    assert (condition["status"], condition["reason"]) == ("True", "EvalLossRising")
    assert "1.5 at step 0 -> 1.8 at step 30" in condition["message"]


def test_reported_retention_becomes_the_forgetting_condition_and_a_warning(
    kube: Kube,
    tmp_path: Path,
    namespace: str,
) -> None:
    for name in ("valid-dataset", "held"):
        create(kube, namespace, valid_dataset(name))
        make_dataset_ready(kube, namespace, name)
    retention = {"retention": {"name": "held", "threshold": 0.1}}
    create(kube, namespace, sft_job(namespace, "forgets", evaluation=retention))
    reconcile_job(kube, CONFIG, namespace, "forgets")
    sink = _sink(kube, tmp_path, namespace, "forgets", "forgets-trainer")
    mixture = [{"name": "valid-dataset", "weight": 1.0, "examples": 9, "examplesPerEpoch": 9,
                "tokensPerEpoch": 120, "repeats": 1.0}]  # fmt: skip
    by_dataset = [{"name": "valid-dataset", "evalLoss": 1.25, "tokens": 40}]

    def report(loss: float, step: int) -> None:
        sink.send(
            TrainerReport.model_validate(
                {
                    "mixture": mixture,
                    "metrics": {"evalLoss": 1.25, "evalByDataset": by_dataset},
                    "retention": {
                        "name": "held",
                        "lossBefore": 2.0,
                        "loss": loss,
                        "step": step,
                        "relativeChange": loss / 2.0 - 1,
                        "tokens": 64,
                    },
                }
            )
        )
        reconcile_job(kube, CONFIG, namespace, "forgets")

    def forgetting() -> dict[str, Any]:
        status = (kube.get_custom(SFT_JOB.plural, namespace, "forgets") or {})["status"]
        return next(c for c in status["conditions"] if c["type"] == "Forgetting")

    def warnings() -> list[str]:
        events = kube.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=forgets"
        ).items
        return [e.message for e in events if e.reason == "RetentionLossRising"]

    report(2.1, 10)
    assert forgetting()["reason"] == "RetentionLossWithinThreshold" and warnings() == []
    report(2.5, 20)
    condition = forgetting()
    assert (condition["status"], condition["reason"]) == ("True", "RetentionLossRising")
    assert "rose 25.0% (2 before training -> 2.5 at step 20)" in condition["message"]
    (warning,) = warnings()
    assert warning == condition["message"]
    status = (kube.get_custom(SFT_JOB.plural, namespace, "forgets") or {})["status"]
    assert status["mixture"] == mixture and status["metrics"]["evalByDataset"] == by_dataset
    assert status["retention"]["tokens"] == 64  # the CRD schema keeps every field
