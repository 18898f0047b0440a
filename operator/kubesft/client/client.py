"""`SFTClient`: create, follow and read SFTDatasets and SFTJobs from Python or a notebook.

Objects go in and come out as the same pydantic models the operator and the CRDs are built
from (`kubesft.api`), so a typo fails in the notebook with the field named, before the
apiserver sees it. No torch, no kopf: only the kubernetes client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast, overload

import yaml

from kubesft.api import (
    SFT_DATASET,
    SFT_JOB,
    InvalidSpec,
    Kind,
    SFTDataset,
    SFTJob,
    parse_object,
)
from kubesft.api.job_status import TERMINAL_PHASES, OutputInfo, Sample
from kubesft.client.connect import connect
from kubesft.client.history import MetricsHistory, history_from_status

Resource: TypeAlias = "SFTDataset | SFTJob"
R = TypeVar("R", SFTDataset, SFTJob)
FIELD_MANAGER = "kubesft-client"
DATASET_DONE = frozenset({"Ready", "Failed"})


class NotFound(LookupError):
    """The named SFTJob or SFTDataset does not exist in the namespace."""


class JobFailed(RuntimeError):
    """A waited-for SFTJob (or SFTDataset) ended Failed; the message carries its reason."""

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        failed = _failure(resource)
        super().__init__(f"{resource.kind} {resource.metadata.name} failed: {failed}")


class SFTClient:
    """SFTDatasets and SFTJobs of one namespace.

    >>> sft = SFTClient(namespace="team-a")            # kubeconfig and context as kubectl
    >>> sft.apply_yaml("examples/quickstart/")          # or sft.create(SFTJob(...))
    >>> job = sft.wait_for_job("quickstart", progress=True)
    >>> job.status.metrics.eval_loss, sft.samples("quickstart"), sft.output("quickstart")

    `api` (a ``kubernetes.client.ApiClient``) overrides the kubeconfig lookup.
    Raises :class:`kubesft.client.KubeconfigError` when no cluster is configured.
    """

    def __init__(
        self,
        namespace: str | None = None,
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        api: Any = None,
    ) -> None:
        from kubernetes import client

        if api is None:
            conn = connect(kubeconfig, context, namespace)
            api, namespace = conn.api, conn.namespace
        self.namespace: str = namespace or "default"
        self.api = api
        self._custom = client.CustomObjectsApi(api)

    # -- create -------------------------------------------------------------------------

    @overload
    def create(self, resource: R) -> R: ...
    @overload
    def create(self, resource: Mapping[str, Any]) -> Resource: ...
    def create(self, resource: Resource | Mapping[str, Any]) -> Resource:
        """Create the object; returns it as stored (with uid, defaults the server added).

        A dict is validated first (raises :class:`kubesft.api.InvalidSpec` naming each bad
        field); an existing object of that name raises ``ApiException`` 409 (use `apply`).
        """
        model = _as_model(resource)
        kind = _kind(model)
        created = self._custom.create_namespaced_custom_object(
            kind.group, kind.version, self.namespace, kind.plural, self._body(model)
        )
        return _reparse(created, model)

    @overload
    def apply(self, resource: R) -> R: ...
    @overload
    def apply(self, resource: Mapping[str, Any]) -> Resource: ...
    def apply(self, resource: Resource | Mapping[str, Any]) -> Resource:
        """Create or update the object by server-side apply (what `kubectl apply
        --server-side` does); fields other managers own, like status, are kept."""
        model = _as_model(resource)
        kind = _kind(model)
        applied = self._custom.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            self.namespace,
            kind.plural,
            model.metadata.name,
            self._body(model),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
            # The generated client deserializes this response to None; read it raw.
            _preload_content=False,
        )
        return _reparse(json.loads(applied.data), model)

    def apply_yaml(self, source: str | Path) -> list[Resource | dict[str, Any]]:
        """Apply every document of a YAML file, a folder of them, or a YAML string, in order.

        SFTDatasets and SFTJobs are validated against the models first (all documents
        before any is applied) and come back as models; other kinds (the ConfigMap
        holding inline data, a Secret) are server-side applied as they are, as dicts.
        """
        out: list[Resource | dict[str, Any]] = []
        for doc in load_yaml(source):
            out.append(self._apply_other(doc) if isinstance(doc, dict) else self.apply(doc))
        return out

    # -- read ---------------------------------------------------------------------------

    def get_job(self, name: str) -> SFTJob:
        """The SFTJob `name`; raises :class:`NotFound`."""
        return _parse(self._get(SFT_JOB, name), SFTJob)

    def get_dataset(self, name: str) -> SFTDataset:
        """The SFTDataset `name`; raises :class:`NotFound`."""
        return _parse(self._get(SFT_DATASET, name), SFTDataset)

    def list_jobs(self) -> list[SFTJob]:
        """Every SFTJob in the namespace, by name."""
        found = self._custom.list_namespaced_custom_object(
            SFT_JOB.group, SFT_JOB.version, self.namespace, SFT_JOB.plural
        )
        jobs = [_parse(obj, SFTJob) for obj in found.get("items", [])]
        return sorted(jobs, key=lambda j: j.metadata.name or "")

    def samples(self, name: str) -> list[Sample]:
        """Greedy answers to held-out prompts before and after training (empty until the
        job finished its final evaluation)."""
        status = self.get_job(name).status
        return list(status.evaluation.samples) if status and status.evaluation else []

    def output(self, name: str) -> OutputInfo | None:
        """Where the adapter or model was written (a path on the output PVC, or an s3 URL);
        None until the job succeeded."""
        status = self.get_job(name).status
        return status.output if status else None

    def metrics_history(self, name: str) -> MetricsHistory:
        """Train losses, checkpoint eval losses and the latest metrics from the status.

        The status keeps the last 50 train losses; the full per-step record is
        `metrics.jsonl` (and TensorBoard files) in the output directory: read it with
        :func:`kubesft.client.read_metrics` where that directory is reachable.
        """
        return history_from_status(self.get_job(name))

    # -- wait ---------------------------------------------------------------------------

    def wait_for_job(
        self,
        name: str,
        *,
        until: Collection[str] | Callable[[SFTJob], bool] = TERMINAL_PHASES,
        timeout: float | None = None,
        interval: float = 2.0,
        progress: bool = False,
        on_update: Callable[[SFTJob], None] | None = None,
        raise_on_failure: bool = True,
    ) -> SFTJob:
        """Poll the SFTJob until its phase is in `until` (or `until(job)` is true).

        `progress` draws a rich progress bar (works in Jupyter); `on_update(job)` is called
        with every changed status. Raises :class:`JobFailed` when the job ends Failed and
        `raise_on_failure`, ``TimeoutError`` after `timeout` seconds naming the last phase.
        Polling, not a watch: status changes at most every few seconds, and a poll needs
        no reconnect or resourceVersion bookkeeping on flaky notebook connections.
        """
        done = _predicate(until)
        if not progress:
            return self._wait(
                self.get_job, name, done, timeout, interval, on_update, raise_on_failure
            )
        from kubesft.client.progress import JobProgressBar

        with JobProgressBar(name) as bar:

            def update(job: SFTJob) -> None:
                bar.update(job)
                if on_update is not None:
                    on_update(job)

            return self._wait(self.get_job, name, done, timeout, interval, update, raise_on_failure)

    def wait_for_dataset(
        self,
        name: str,
        *,
        until: Collection[str] | Callable[[SFTDataset], bool] = DATASET_DONE,
        timeout: float | None = None,
        interval: float = 2.0,
        on_update: Callable[[SFTDataset], None] | None = None,
        raise_on_failure: bool = True,
    ) -> SFTDataset:
        """Poll the SFTDataset until it is Ready or Failed (or `until`); as `wait_for_job`."""
        done = _predicate(until)
        return self._wait(
            self.get_dataset, name, done, timeout, interval, on_update, raise_on_failure
        )

    # -- delete -------------------------------------------------------------------------

    def delete_job(self, name: str) -> None:
        """Delete the SFTJob (its trainer Job, pods and ConfigMap go with it); no-op if absent."""
        self._delete(SFT_JOB, name)

    def delete_dataset(self, name: str) -> None:
        """Delete the SFTDataset; no-op if absent."""
        self._delete(SFT_DATASET, name)

    # -- internals ----------------------------------------------------------------------

    def _body(self, model: Resource) -> dict[str, Any]:
        # apiVersion and kind are defaults of the models, left out of to_dict when unset.
        body = {"apiVersion": model.api_version, "kind": model.kind, **model.to_dict()}
        body.pop("status", None)  # status belongs to the operator (its own subresource)
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", self.namespace) != self.namespace:
            raise InvalidSpec(
                [f"metadata.namespace: {meta['namespace']} differs from the client's "
                 f"namespace {self.namespace}"]
            )  # fmt: skip
        meta["namespace"] = self.namespace
        for key in ("uid", "resourceVersion", "generation", "managedFields", "creationTimestamp"):
            meta.pop(key, None)
        return body

    def _apply_other(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of a kind kubesft has no model for, through the dynamic client."""
        from kubernetes.dynamic import DynamicClient

        resource = DynamicClient(self.api).resources.get(
            api_version=doc["apiVersion"], kind=doc["kind"]
        )
        namespace = self.namespace if resource.namespaced else None
        applied = resource.server_side_apply(
            body=doc,
            name=doc["metadata"]["name"],
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        out: dict[str, Any] = applied.to_dict()
        return out

    def _get(self, kind: Kind, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._custom.get_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name
            )
        except ApiException as err:
            if err.status == 404:
                raise NotFound(f"{kind.kind} {self.namespace}/{name} not found") from None
            raise
        return obj

    def _delete(self, kind: Kind, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._custom.delete_namespaced_custom_object(
                kind.group, kind.version, self.namespace, kind.plural, name
            )
        except ApiException as err:
            if err.status != 404:
                raise

    def _wait(
        self,
        get: Callable[[str], R],
        name: str,
        done: Callable[[R], bool],
        timeout: float | None,
        interval: float,
        on_update: Callable[[R], None] | None,
        raise_on_failure: bool,
    ) -> R:
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: Any = object()
        while True:
            obj = get(name)
            status = obj.status.model_dump() if obj.status else None
            if status != seen and on_update is not None:
                on_update(obj)
            seen = status
            phase = obj.status.phase if obj.status else None
            if raise_on_failure and phase == "Failed":
                raise JobFailed(obj)
            if done(obj):
                return obj
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{obj.kind} {self.namespace}/{name} still {phase or 'without status'} "
                    f"after {timeout:g}s"
                )
            time.sleep(interval)


def load_yaml(source: str | Path) -> list[Resource | dict[str, Any]]:
    """The documents of a YAML file, a folder of `*.yaml`/`*.yml` (by name), or YAML text.

    SFTDatasets and SFTJobs become models; other kinds stay dicts (they need `apiVersion`,
    `kind` and `metadata.name`). Raises :class:`kubesft.api.InvalidSpec` naming the file,
    document and field of every problem, all documents checked first.
    """
    docs: list[tuple[str, Any]] = []
    path = Path(source) if isinstance(source, Path) or "\n" not in source else None
    if path is not None and path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
    elif path is not None and path.exists():
        files = [path]
    elif path is None:
        files = []
        docs = [(f"document {i}", d) for i, d in enumerate(yaml.safe_load_all(str(source)), 1)]
    else:
        raise FileNotFoundError(f"{source}: no such file or folder")
    for file in files:
        with file.open() as fh:
            docs += [(f"{file} document {i}", d) for i, d in enumerate(yaml.safe_load_all(fh), 1)]
    out: list[Resource | dict[str, Any]] = []
    problems: list[str] = []
    for where, doc in docs:
        if doc is None:
            continue
        try:
            out.append(_load_document(doc))
        except InvalidSpec as err:
            problems += [f"{where}: {p}" for p in err.problems]
    if problems:
        raise InvalidSpec(problems)
    return out


def _load_document(doc: Any) -> Resource | dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidSpec([f"(root): must be a mapping (got {type(doc).__name__})"])
    if str(doc.get("apiVersion", "")).startswith(f"{SFT_JOB.group}/"):
        return _as_model(doc)
    missing = [f for f in ("apiVersion", "kind") if not doc.get(f)]
    if not (doc.get("metadata") or {}).get("name"):
        missing.append("metadata.name")
    if missing:
        raise InvalidSpec([f"{f} is required" for f in missing])
    return doc


def _as_model(resource: Resource | Mapping[str, Any]) -> Resource:
    if isinstance(resource, (SFTDataset, SFTJob)):
        model: Resource = resource
    else:
        model = cast(Resource, parse_object(resource))
    if not model.metadata.name:
        raise InvalidSpec(["metadata.name is required"])
    return model


def _kind(model: Resource) -> Kind:
    return SFT_JOB if isinstance(model, SFTJob) else SFT_DATASET


def _parse(obj: Mapping[str, Any], model: type[R]) -> R:
    return model.model_validate(dict(obj))


def _reparse(obj: Mapping[str, Any], like: Resource) -> Resource:
    """The server's copy of `like`, as the same model type."""
    if isinstance(like, SFTJob):
        return _parse(obj, SFTJob)
    return _parse(obj, SFTDataset)


def _predicate(until: Collection[str] | Callable[[R], bool]) -> Callable[[R], bool]:
    if callable(until):
        return until
    phases = frozenset(until)
    return lambda obj: obj.status is not None and obj.status.phase in phases


def _failure(resource: Resource) -> str:
    conditions: Iterable[Any] = resource.status.conditions if resource.status else []
    for cond in conditions:
        if cond.type in ("Failed", "Ready") and cond.reason:
            return f"{cond.reason}: {cond.message}"
    return "no reason reported"
