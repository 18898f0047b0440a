"""Pure builders: an SFTJob (plus its datasets, `trainer_data`) → the trainer's child objects."""

from __future__ import annotations

import json
from typing import Any

from kubesft.api import SFTJob, TrainerConfig, TrainerRuntime
from kubesft.operator import names
from kubesft.operator.config import OperatorConfig
from kubesft.operator.owner import child_metadata, owner_reference
from kubesft.operator.pod_parts import (
    CONFIG_DIR,
    TERMINATION_LOG,
    aws_env,
    config_volume,
    cpu_threads_env,
    env_field,
    env_secret,
    env_value,
    join,
    mlflow_env,
    mount,
    pod_failure_policy,
    pvc_volume,
    resources,
)
from kubesft.operator.security import container_security_context, pod_security_context
from kubesft.operator.trainer_data import TrainerInputs, data_volumes, trainer_dataset

OUTPUT_DIR = "/output"
MODEL_DIR = "/model"
SCRATCH_DIR = "/scratch"
RENDEZVOUS_PORT = 29500
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def _sft_owner(job: SFTJob) -> dict[str, Any]:
    return owner_reference("SFTJob", job.metadata)


def output_dir(job: SFTJob) -> str:
    out = job.spec.output
    return join(OUTPUT_DIR, out.pvc.path) if out.pvc else SCRATCH_DIR + "/output"


def trainer_config(job: SFTJob, inputs: TrainerInputs) -> TrainerConfig:
    """The trainer's whole input: the user's spec plus paths inside the pod."""
    model = job.spec.model
    model_path = join(MODEL_DIR, model.pvc.path) if model.source == "pvc" and model.pvc else None
    runtime = TrainerRuntime(
        output_dir=output_dir(job),
        datasets=[trainer_dataset(d) for d in inputs.datasets],
        retention=trainer_dataset(inputs.retention) if inputs.retention else None,
        model_path=model_path,
        job_name=job.metadata.name or "",
        namespace=job.metadata.namespace or "",
        job_uid=job.metadata.uid or "",
        termination_log=TERMINATION_LOG,
        progress_interval_seconds=inputs.config.progress_interval_seconds,
    )
    return TrainerConfig(spec=job.spec, runtime=runtime)


def build_config_map(job: SFTJob, inputs: TrainerInputs) -> dict[str, Any]:
    name = job.metadata.name or ""
    config = trainer_config(job, inputs)
    payload = {
        "spec": config.spec.to_manifest(),
        "runtime": config.runtime.model_dump(by_alias=True, mode="json"),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            names.trainer_config(name),
            job.metadata.namespace or "",
            names.job_labels(name),
            _sft_owner(job),
        ),
        "data": {"config.json": json.dumps(payload, indent=1, sort_keys=True)},
    }


def trainer_command(job: SFTJob, config: OperatorConfig) -> list[str]:
    """One process per pod for a single GPU; `accelerate launch` across GPUs and nodes."""
    train = ["train", "--config", f"{CONFIG_DIR}/config.json"]
    res = job.spec.resources
    if res.nodes == 1 and res.gpus <= 1:
        return [config.python, "-m", "kubesft_trainer", *train]
    launch = ["accelerate", "launch", "--num_processes", "$(KUBESFT_WORLD_SIZE)"]
    if res.gpus > 1 or res.nodes > 1:
        launch.append("--multi_gpu")
    if res.nodes > 1:
        launch += [
            "--num_machines", "$(KUBESFT_NUM_MACHINES)",
            "--machine_rank", "$(KUBESFT_MACHINE_RANK)",
            "--main_process_ip", "$(KUBESFT_MAIN_ADDRESS)",
            "--main_process_port", str(RENDEZVOUS_PORT),
        ]  # fmt: skip
    return [*launch, "--module", "kubesft_trainer", *train]


def _distributed_env(job: SFTJob) -> list[dict[str, Any]]:
    name, ns = job.metadata.name or "", job.metadata.namespace or ""
    res = job.spec.resources
    env = [env_value("KUBESFT_WORLD_SIZE", str(res.nodes * max(res.gpus, 1)))]
    if res.nodes > 1:
        # Indexed Job pods are named <job>-<index> and resolvable through the headless
        # Service: rank 0 is the rendezvous host.
        main = f"{names.trainer_job(name)}-0.{names.trainer_service(name)}.{ns}.svc"
        env += [
            env_value("KUBESFT_NUM_MACHINES", str(res.nodes)),
            env_field("KUBESFT_MACHINE_RANK", COMPLETION_INDEX),
            env_value("KUBESFT_MAIN_ADDRESS", main),
        ]
    return env


def _env(job: SFTJob) -> list[dict[str, Any]]:
    spec = job.spec
    env = [
        env_value("PYTHONUNBUFFERED", "1"),
        env_value("KUBESFT_JOB_NAME", job.metadata.name or ""),
        env_field("KUBESFT_NAMESPACE", "metadata.namespace"),
        env_field("KUBESFT_POD_NAME", "metadata.name"),
        env_value("HF_HOME", join(OUTPUT_DIR if spec.output.pvc else SCRATCH_DIR, ".cache/hf")),
        *_distributed_env(job),
        *cpu_threads_env(spec.resources.cpu),
    ]
    if spec.model.token_secret_ref:
        env.append(env_secret("HF_TOKEN", spec.model.token_secret_ref))
    if spec.output.url:
        env.append(env_value("KUBESFT_OUTPUT_URL", spec.output.url))
    if spec.tracking.mlflow is not None:
        env += mlflow_env(spec.tracking.mlflow.credentials_secret_ref)
    return env + aws_env(spec.output.credentials_secret_ref)


def _volumes(job: SFTJob, inputs: TrainerInputs) -> tuple[list[Any], list[Any]]:
    spec, name = job.spec, job.metadata.name or ""
    shm = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}}
    dataset_volumes, dataset_mounts = data_volumes(inputs)
    volumes = [
        config_volume("config", names.trainer_config(name)),
        *dataset_volumes,
        shm,
        {"name": "scratch", "emptyDir": {}},
    ]
    # The output claim is mounted whole because the hub cache (HF_HOME) at its root is
    # shared by runs; the output path is checked to stay inside it here (`join`), at
    # admission and by the trainer. Model claims are mounted whole too: model.pvc.path may
    # name a GGUF file.
    mounts = [
        mount("config", CONFIG_DIR, read_only=True),
        *dataset_mounts,
        mount("shm", "/dev/shm"),
        mount("scratch", SCRATCH_DIR),
    ]
    if spec.output.pvc:
        volumes.append(pvc_volume("output", spec.output.pvc.claim_name))
        mounts.append(mount("output", OUTPUT_DIR))
    if spec.model.source == "pvc" and spec.model.pvc:
        volumes.append(pvc_volume("model", spec.model.pvc.claim_name, read_only=True))
        mounts.append(mount("model", MODEL_DIR, read_only=True))
    return volumes, mounts


def _container(job: SFTJob, inputs: TrainerInputs, mounts: list[Any]) -> dict[str, Any]:
    res = job.spec.resources
    return {
        "name": names.TRAINER_CONTAINER,
        "image": job.spec.image or inputs.config.trainer_image,
        "imagePullPolicy": inputs.config.image_pull_policy,
        "command": trainer_command(job, inputs.config),
        "env": _env(job),
        "resources": resources(
            res.cpu, res.memory, {res.gpu_resource_name: res.gpus}, res.ephemeral_storage
        ),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _pod_spec(job: SFTJob, inputs: TrainerInputs) -> dict[str, Any]:
    res, name = job.spec.resources, job.metadata.name or ""
    volumes, mounts = _volumes(job, inputs)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # SIGTERM -> checkpoint at the step boundary -> exit PREEMPTED (kubesft_trainer/health.py)
        "terminationGracePeriodSeconds": job.spec.retry.termination_grace_period_seconds,
        "serviceAccountName": names.trainer_account(name),
        "securityContext": pod_security_context(inputs.config.run_as_user),
        "containers": [_container(job, inputs, mounts)],
        "volumes": volumes,
    }
    if res.nodes > 1:
        pod["subdomain"] = names.trainer_service(name)
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations
        ]
    if res.affinity:
        pod["affinity"] = res.affinity
    if res.priority_class_name:
        pod["priorityClassName"] = res.priority_class_name
    return pod


def mutable_job_fields(job: SFTJob) -> dict[str, int | None]:
    """The trainer Job's fields that follow later SFTJob edits (both mutable on a Job);
    None means unset. `api.job.MUTABLE_AFTER_START` lists them for admission."""
    spec = job.spec
    return {
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
    }


def job_suspended(job: SFTJob) -> bool:
    """Created suspended when the user says so, or when Kueue is to admit it."""
    return job.spec.suspend or bool(names.passthrough_labels(job.metadata.labels))


def build_job(job: SFTJob, inputs: TrainerInputs) -> dict[str, Any]:
    spec, name = job.spec, job.metadata.name or ""
    labels = {**names.job_labels(name), **names.passthrough_labels(job.metadata.labels)}
    batch: dict[str, Any] = {
        "suspend": job_suspended(job),
        "backoffLimit": spec.retry.max_restarts,
        "completions": spec.resources.nodes,
        "parallelism": spec.resources.nodes,
        "podFailurePolicy": pod_failure_policy(names.TRAINER_CONTAINER, trainer=True),
        "template": {
            "metadata": {"labels": names.job_labels(name)},
            "spec": _pod_spec(job, inputs),
        },
    }
    if spec.resources.nodes > 1:
        batch["completionMode"] = "Indexed"
    batch.update({k: v for k, v in mutable_job_fields(job).items() if v is not None})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            names.trainer_job(name), job.metadata.namespace or "", labels, _sft_owner(job)
        ),
        "spec": batch,
    }


def build_service(job: SFTJob) -> dict[str, Any]:
    """Headless Service for multi-node rendezvous (only when nodes > 1)."""
    name = job.metadata.name or ""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(
            names.trainer_service(name),
            job.metadata.namespace or "",
            names.job_labels(name),
            _sft_owner(job),
        ),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {names.LABEL_JOB: name},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def build_rbac(job: SFTJob) -> list[dict[str, Any]]:
    """A ServiceAccount that may read and patch the status of this one SFTJob, nothing else."""
    name, ns = job.metadata.name or "", job.metadata.namespace or ""
    account = names.trainer_account(name)
    labels = names.job_labels(name)
    owner = _sft_owner(job)
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": child_metadata(account, ns, labels, owner),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": child_metadata(account, ns, labels, owner),
            "rules": [
                {
                    "apiGroups": ["kubesft.io"],
                    "resources": ["sftjobs/status"],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": child_metadata(account, ns, labels, owner),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
        },
    ]
