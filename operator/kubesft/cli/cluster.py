"""`kubesft status` and `kubesft logs`: an SFTJob on a cluster, read through the kubeconfig.

Every failure a user can meet here (no kubeconfig, an unreachable or refusing API server,
no such SFTJob, logs the node does not serve) becomes a CLIError: one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubesft.api import GROUP, SFT_JOB, VERSION, SFTJob, parse_object
from kubesft.cli.errors import CLIError
from kubesft.operator.names import LABEL_JOB, TRAINER_CONTAINER

LOCAL_NODE_LOGS = "<node runner root>/logs/<namespace>/<pod>/<container>.log"
"""Where the local node runner (make demo, tests) keeps container logs: it serves none."""
WAITING = ("ContainerCreating", "PodInitializing", "is waiting to start")
"""Phrases of the apiserver's answer for a container that has not started yet."""


@dataclass(frozen=True)
class Target:
    """An API client and the namespace a command works in."""

    api: Any
    namespace: str


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """-n, --kubeconfig and --context, as kubectl spells them (`kubesft.client.connect`)."""
    from kubesft.client.connect import add_connection_flags

    parser.add_argument(
        "--namespace", "-n", help="namespace of the SFTJob (default: the context's, else default)"
    )
    add_connection_flags(parser, top_level=False)


def api_message(err: Any) -> str:
    """The apiserver's own message from an ApiException body, else its reason."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return " ".join(str(err.body or err.reason or "").split()) or f"HTTP {err.status}"


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Turn the kubernetes client's exceptions into one-line CLIErrors about ``what``."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ConfigException as err:
        raise CLIError(
            f"no usable kubeconfig: {err} (set KUBECONFIG or pass --kubeconfig)"
        ) from None
    except ApiException as err:
        raise api_error(err, what) from None
    except (HTTPError, OSError) as err:
        raise CLIError(f"cannot reach the Kubernetes API server: {_root_cause(err)}") from None


def api_error(err: Any, what: str) -> CLIError:
    """The one line for an ApiException met while reading ``what``."""
    if err.status == 404:
        return CLIError(f"{what} not found")
    if err.status in (401, 403):
        return CLIError(f"not allowed to read {what}: {api_message(err)}")
    return CLIError(f"API server error reading {what}: {api_message(err)}")


def _root_cause(err: BaseException) -> str:
    reason = getattr(err, "reason", None)  # urllib3's MaxRetryError wraps the real one
    cause = reason if isinstance(reason, BaseException) else err
    return " ".join(str(cause).split()) or type(cause).__name__


def connect(args: argparse.Namespace) -> Target:
    """An API client from the kubeconfig, and -n or the context's namespace (else default),
    resolved as kubectl does (`kubesft.client.connect`)."""
    from kubesft.client.connect import KubeconfigError
    from kubesft.client.connect import connect as connect_cluster

    with kube_errors("the kubeconfig"):
        try:
            conn = connect_cluster(args.kubeconfig, args.context, args.namespace)
        except KubeconfigError as err:  # it names the kubeconfig or the context to fix
            if args.context is not None and "context" in str(err):
                raise CLIError(str(err)) from None
            message = f"no usable kubeconfig: {err} (set KUBECONFIG or pass --kubeconfig)"
            raise CLIError(message) from None
    conn.api.configuration.retries = 1  # one line soon, not after urllib3's default retries
    return Target(conn.api, conn.namespace)


def fetch_job(target: Target, name: str) -> SFTJob:
    """The SFTJob, parsed; CLIError when it does not exist."""
    from kubernetes import client

    custom = client.CustomObjectsApi(target.api)
    with kube_errors(f"SFTJob {target.namespace}/{name}"):
        obj: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, target.namespace, SFT_JOB.plural, name
        )
    job = parse_object(obj)
    assert isinstance(job, SFTJob)
    return job


def cmd_status(args: argparse.Namespace) -> int:
    """Show (or with -w, follow) one SFTJob's progress, metrics, conditions and samples."""
    from rich.console import Console
    from rich.live import Live

    from kubesft.status_view import render_status

    target = connect(args)
    console = Console()
    job = fetch_job(target, args.name)
    if not args.watch:
        console.print(render_status(job))
        return 0
    with Live(render_status(job), console=console, refresh_per_second=2) as live:
        while True:
            job = fetch_job(target, args.name)
            live.update(render_status(job))
            if job.status and job.status.phase in ("Succeeded", "Failed"):
                return 0 if job.status.phase == "Succeeded" else 1
            time.sleep(args.interval)


def trainer_pods(target: Target, name: str) -> list[Any]:
    """Pods of the SFTJob's trainer Job, oldest first."""
    from kubernetes import client

    core = client.CoreV1Api(target.api)
    with kube_errors(f"the pods of SFTJob {target.namespace}/{name}"):
        pods: Any = core.list_namespaced_pod(target.namespace, label_selector=f"{LABEL_JOB}={name}")
    return sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the trainer's logs: every pod of the SFTJob oldest first; -f follows the newest."""
    target = connect(args)
    fetch_job(target, args.name)  # "not found" before "no pods"
    pods = trainer_pods(target, args.name)
    while not pods and args.follow:
        time.sleep(args.interval)
        pods = trainer_pods(target, args.name)
    if not pods:
        raise CLIError(
            f"SFTJob {target.namespace}/{args.name} has no trainer pods yet: "
            f"`kubesft status {args.name}` says what it waits for"
        )
    for index, pod in enumerate(pods):
        follow = args.follow and index == len(pods) - 1
        print(f"==> pod {pod.metadata.name} <==", flush=True)
        _print_log(target, pod, args.tail, follow=follow, interval=args.interval)
    return 0


def _print_log(
    target: Target, pod: Any, tail: int | None, *, follow: bool, interval: float
) -> None:
    """One pod's trainer log; following, it waits for the container to start."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(target.api)
    name, ns = pod.metadata.name, target.namespace
    what = f"pod {ns}/{name}"
    with kube_errors(what):
        while True:
            try:
                response = core.read_namespaced_pod_log(
                    name, ns, container=TRAINER_CONTAINER, tail_lines=tail, follow=follow,
                    _preload_content=False,
                )  # fmt: skip
                for chunk in response.stream():
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                return
            except ApiException as err:
                message = api_message(err)
                waiting = any(phrase in message for phrase in WAITING)
                if waiting and follow:
                    time.sleep(interval)  # not started yet
                    continue
                if waiting:
                    raise CLIError(f"{what} has not started: {message} (-f waits)") from None
                if err.status in (401, 403, 404):
                    raise api_error(err, what) from None
                raise CLIError(_not_served(ns, name, pod, message)) from None


def _not_served(ns: str, name: str, pod: Any, message: str) -> str:
    node = getattr(pod.spec, "node_name", None) or "(not scheduled)"
    return (
        f"the logs of pod {ns}/{name} are not served by its node {node}: {message}. "
        f"With the local node runner they are files: {LOCAL_NODE_LOGS} "
        "(README.md, Troubleshooting)"
    )
