"""The trainer's progress channel on the real apiserver: its own SFTJob and nothing else."""

from __future__ import annotations

from pathlib import Path

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
