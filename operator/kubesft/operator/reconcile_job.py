"""SFTJob: wait for data, check feasibility, create the trainer's children, mirror status."""

from __future__ import annotations

from kubesft.api import (
    SFT_DATASET,
    SFT_JOB,
    InvalidSpec,
    ObjectMeta,
    SFTDataset,
    SFTJob,
    parse_object,
)
from kubesft.api.job_status import TERMINAL_PHASES, is_finished
from kubesft.operator import build_trainer, names, trainer_data
from kubesft.operator.config import OperatorConfig
from kubesft.operator.derive_job import JobFacts
from kubesft.operator.feasibility import assess
from kubesft.operator.job_plan import JobPlan, plan_job
from kubesft.operator.kube import CreateFailed, Kube, Manifest, RejectedObject, now_rfc3339
from kubesft.operator.observe import ObservedJob, counts_pods, observe_job
from kubesft.operator.owner import owner_reference
from kubesft.operator.precheck import precheck
from kubesft.operator.status_patch import patch_status, post_event, status_dict


def _datasets(kube: Kube, job: SFTJob) -> list[SFTDataset]:
    """The SFTDatasets the job reads (`spec.dataset_names()`) that exist."""
    found = []
    for name in job.spec.dataset_names():
        raw = kube.get_custom(SFT_DATASET.plural, job.metadata.namespace or "", name)
        if raw is not None:
            dataset = parse_object(raw)
            assert isinstance(dataset, SFTDataset)
            found.append(dataset)
    return found


def _create_children(
    kube: Kube, job: SFTJob, datasets: list[SFTDataset], config: OperatorConfig
) -> tuple[Manifest, Manifest]:
    """ConfigMap, ServiceAccount, Role (and Service) at once → RoleBinding → Job, each
    create-or-get by name.

    Returns the ConfigMap and the Job as the API returned them.
    """
    inputs = trainer_data.trainer_inputs(job, datasets, config)
    account, role, binding = build_trainer.build_rbac(job)
    independent = [build_trainer.build_config_map(job, inputs), account, role]
    if job.spec.resources.nodes > 1:
        independent.append(build_trainer.build_service(job))
    cm = kube.ensure_all(independent)[0]
    kube.ensure(binding)  # RBAC checks a binding against its Role, which must exist
    created = kube.ensure(build_trainer.build_job(job, inputs))
    kube.event(
        job.to_dict(), "Normal", "Created", f"created trainer Job {created['metadata']['name']}"
    )
    return cm, created


def _adopt_config(kube: Kube, job: SFTJob, trainer: Manifest, cm: Manifest | None) -> None:
    """Hand the ConfigMap to the Job, so TTL cleanup of the Job removes it too.

    ``cm`` is the ConfigMap when this reconcile just wrote it (saves reading it again).
    """
    ns, name = job.metadata.namespace or "", job.metadata.name or ""
    if cm is None:
        cm = kube.get("ConfigMap", ns, names.trainer_config(name))
    owners = (cm or {}).get("metadata", {}).get("ownerReferences") or []
    if cm is not None and not any(o.get("kind") == "Job" for o in owners):
        owner = owner_reference("Job", ObjectMeta.model_validate(trainer["metadata"]), "batch/v1")
        kube.set_owner("ConfigMap", ns, names.trainer_config(name), owner)


def _sync_suspend(kube: Kube, job: SFTJob, trainer: Manifest) -> None:
    """spec.suspend drives Job.spec.suspend; with Kueue, only suspending is ours to do."""
    current = bool(trainer.get("spec", {}).get("suspend"))
    queued = bool(names.passthrough_labels(job.metadata.labels))
    desired = job.spec.suspend or (queued and current)
    if desired != current:
        kube.patch_job(
            job.metadata.namespace or "",
            trainer["metadata"]["name"],
            {"spec": {"suspend": desired}},
        )
        trainer.setdefault("spec", {})["suspend"] = desired


def _sync_mutable(kube: Kube, job: SFTJob, trainer: Manifest) -> None:
    """Edits of spec.activeDeadlineSeconds / ttlSecondsAfterFinished reach the Job."""
    current = trainer.setdefault("spec", {})
    patch = {k: v for k, v in build_trainer.mutable_job_fields(job).items() if current.get(k) != v}
    if patch:  # a null removes the field
        kube.patch_job(job.metadata.namespace or "", trainer["metadata"]["name"], {"spec": patch})
        current.update(patch)


def _observe(kube: Kube, trainer: Manifest) -> ObservedJob:
    ns, name = trainer["metadata"]["namespace"], trainer["metadata"]["name"]
    pods = kube.job_pods(ns, name) if counts_pods(trainer) else []
    return observe_job(trainer, pods, names.TRAINER_CONTAINER)


def reconcile_job(kube: Kube, config: OperatorConfig, namespace: str, name: str) -> str | None:
    """Converge one SFTJob: read → plan (`job_plan.plan_job`) → apply → write status.

    Returns its phase (None when it is gone).
    """
    raw = kube.get_custom(SFT_JOB.plural, namespace, name)
    if raw is None:
        return None
    job = parse_object(raw)
    assert isinstance(job, SFTJob)
    if is_finished(raw.get("status"), job.metadata.generation):
        assert job.status is not None
        return job.status.phase  # finished: never re-run, even when TTL removed the children
    previous = job.status
    if previous is not None and previous.phase in TERMINAL_PHASES:
        # Failed before it started and edited since: evaluate afresh.
        job = job.model_copy(update={"status": None})
    trainer = kube.get("Job", namespace, names.trainer_job(name))
    cm: Manifest | None = None
    plan: JobPlan | None = None
    if trainer is None:
        # The datasets matter only until the trainer exists (their locations are in the
        # ConfigMap from then on), so they are read only here.
        datasets = _datasets(kube, job)
        assessment = assess(job, config)
        facts = JobFacts(datasets, None, assessment.problem, assessment.message)
        plan = plan_job(job, facts, now_rfc3339(), previous=previous)
        if plan.create_trainer:
            problems = precheck(job, {d.metadata.name or "": d for d in datasets})
            if problems:  # reported by the reconciler as Failed/InvalidSpec + a Warning
                raise InvalidSpec(problems)
            try:
                cm, trainer = _create_children(kube, job, datasets, config)
            except RejectedObject as err:  # the same: a condition and a Warning naming it
                raise InvalidSpec([str(err)]) from None
            except CreateFailed as err:  # e.g. quota, RBAC, apiserver down: retried
                kube.event(job.to_dict(), "Warning", "FailedCreate", f"{err}; retrying")
                raise
            # The trainer's plan below starts from this one's DatasetReady and Feasible.
            job = job.model_copy(update={"status": plan.status})
    if trainer is not None:
        _sync_suspend(kube, job, trainer)
        _sync_mutable(kube, job, trainer)
        if job.status is None or job.status.start_time is None:
            # startTime is recorded in the same reconcile that adopts the ConfigMap, so
            # once it is set the adoption has happened: no need to read the ConfigMap.
            _adopt_config(kube, job, trainer, cm)
        facts = JobFacts([], _observe(kube, trainer))
        plan = plan_job(job, facts, now_rfc3339(), previous=previous)
    assert plan is not None
    patch_status(kube, SFT_JOB.plural, raw, status_dict(previous), plan.status)
    for event in plan.events:
        post_event(kube, raw, event.type, event.reason, event.message)
    return str(plan.status.phase)
