"""What the trainer pod gets from the spec: MLflow credentials by reference, torch threads."""

from __future__ import annotations

from kubesft.api.tracking import MLFLOW_CREDENTIAL_KEYS
from kubesft.operator import build_trainer
from tests.unit.operator.fixtures import inputs, job
from tests.unit.operator.test_build_trainer import container, env


def test_mlflow_credentials_come_from_the_named_secret_each_key_optional() -> None:
    mlflow = {"trackingUri": "https://mlflow.example", "credentialsSecretRef": {"name": "mlf"}}
    e = env(container(build_trainer.build_job(job(tracking={"mlflow": mlflow}), inputs())))
    for key in MLFLOW_CREDENTIAL_KEYS:
        assert e[key] == {"secretKeyRef": {"name": "mlf", "key": key, "optional": True}}
    plain = env(container(build_trainer.build_job(job(), inputs())))
    assert not set(MLFLOW_CREDENTIAL_KEYS) & set(plain)


def test_torch_threads_follow_the_cpu_limit() -> None:
    for cpu, threads in (("1", "1"), ("2500m", "2"), ("500m", "1"), ("8", "8")):
        resources = {"gpus": 0, "cpu": cpu}
        e = env(container(build_trainer.build_job(job(resources=resources), inputs())))
        assert e["OMP_NUM_THREADS"] == threads, cpu
    assert "OMP_NUM_THREADS" not in env(container(build_trainer.build_job(job(), inputs())))
