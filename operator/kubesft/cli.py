"""The `kubesft` command line: CRD generation and offline validation of manifests."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from kubesft.api import InvalidSpec, parse_object
from kubesft.crd import render_crds, write_crds

DEFAULT_CRD_DIR = Path("crds")


def _cmd_crds(args: argparse.Namespace) -> int:
    """Print the CRDs, write them to a folder, or check a folder is up to date."""
    rendered = render_crds()
    if args.check:
        stale = [
            name
            for name, text in rendered.items()
            if not (args.output_dir / name).is_file()
            or (args.output_dir / name).read_text() != text
        ]
        if stale:
            print(
                f"{args.output_dir} is out of date with kubesft.api: {', '.join(stale)}; "
                "run `kubesft crds --write`",
                file=sys.stderr,
            )
            return 1
        print(f"{args.output_dir} is up to date")
        return 0
    if args.write:
        for path in write_crds(args.output_dir):
            print(f"wrote {path}")
        return 0
    sys.stdout.write("---\n".join(rendered.values()))
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    """Print the field reference, or write/check docs/api-reference.md."""
    from kubesft.crd.reference import render_reference

    text = render_reference()
    if args.check:
        if not args.output.is_file() or args.output.read_text() != text:
            print(f"{args.output} is stale: run `kubesft reference --write`", file=sys.stderr)
            return 1
        return 0
    if args.write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
        return 0
    sys.stdout.write(text)
    return 0


def iter_documents(path: Path) -> Iterator[tuple[int, Any]]:
    """(1-based document index, object) for each YAML document in ``path``."""
    with path.open() as fh:
        for index, doc in enumerate(yaml.safe_load_all(fh), start=1):
            if doc is not None:
                yield index, doc


def validate_documents(path: Path) -> list[str]:
    """Problems with the kubesft objects in ``path`` (other kinds are skipped)."""
    problems: list[str] = []
    try:
        docs = list(iter_documents(path))
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: cannot read YAML: {exc}"]
    parsed: list[Any] = []
    for index, doc in docs:
        if not isinstance(doc, dict) or not str(doc.get("apiVersion", "")).startswith(
            "kubesft.io/"
        ):
            continue
        name = (doc.get("metadata") or {}).get("name", f"document {index}")
        try:
            parsed.append(parse_object(doc))
        except InvalidSpec as exc:
            problems += [f"{path}: {doc.get('kind')}/{name}: {p}" for p in exc.problems]
    return problems + [f"{path}: {p}" for p in cannot_act(parsed)]


def cannot_act(objects: Sequence[Any]) -> list[str]:
    """The operator's precheck, offline: SFTJob settings that cannot act with an SFTDataset
    given alongside (e.g. earlyStopping when the dataset makes no eval split)."""
    from kubesft.api import SFTDataset, SFTJob
    from kubesft.operator.precheck import precheck

    datasets = {o.metadata.name: o for o in objects if isinstance(o, SFTDataset)}
    return [
        f"SFTJob/{o.metadata.name}: {problem}"
        for o in objects
        if isinstance(o, SFTJob) and o.spec.dataset.name in datasets
        for problem in precheck(o, datasets[o.spec.dataset.name])
    ]


def _cmd_validate(args: argparse.Namespace) -> int:
    """Validate manifests offline against the same models the operator uses."""
    problems: list[str] = []
    for path in args.files:
        problems += validate_documents(path)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(args.files)} file(s) valid")
    return 0


def _cmd_operator_run(args: argparse.Namespace) -> int:
    """Run the operator in this process until interrupted."""
    from kubesft.operator.run import run_operator

    run_operator(args.namespace, args.liveness, args.log_format, args.verbose)
    return 0


def _api_and_namespace(args: argparse.Namespace) -> tuple[Any, str]:
    """An API client for --kubeconfig/--context (as kubectl resolves them), and -n or the
    context's namespace."""
    from kubesft.client.connect import KubeconfigError, connect

    try:
        conn = connect(args.kubeconfig, args.context, args.namespace)
    except KubeconfigError as err:
        raise SystemExit(f"error: {err}") from None
    return conn.api, conn.namespace


def _cmd_status(args: argparse.Namespace) -> int:
    """Show (or with -w, follow) one SFTJob's progress, metrics, conditions and samples."""
    import time

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from rich.console import Console
    from rich.live import Live

    from kubesft.api import GROUP, SFT_JOB, VERSION, SFTJob
    from kubesft.status_view import render_status

    api, ns = _api_and_namespace(args)
    custom = client.CustomObjectsApi(api)

    def fetch() -> Any:
        try:
            obj: Any = custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, SFT_JOB.plural, args.name
            )
        except ApiException as err:
            if err.status == 404:
                raise SystemExit(f"SFTJob {ns}/{args.name} not found") from None
            raise
        job = parse_object(obj)
        assert isinstance(job, SFTJob)
        return job

    console = Console()
    if not args.watch:
        console.print(render_status(fetch()))
        return 0
    with Live(render_status(fetch()), console=console, refresh_per_second=2) as live:
        while True:
            job = fetch()
            live.update(render_status(job))
            if job.status and job.status.phase in ("Succeeded", "Failed"):
                return 0 if job.status.phase == "Succeeded" else 1
            time.sleep(args.interval)


def _cmd_logs(args: argparse.Namespace) -> int:
    """Print the trainer's logs (all pods of the SFTJob's trainer Job, oldest first)."""
    from kubernetes import client

    api, ns = _api_and_namespace(args)
    core = client.CoreV1Api(api)
    pods: Any = core.list_namespaced_pod(ns, label_selector=f"kubesft.io/job={args.name}")
    items: list[Any] = sorted(pods.items, key=lambda p: p.metadata.creation_timestamp)
    if not items:
        print(f"no trainer pods for SFTJob {ns}/{args.name} (yet)", file=sys.stderr)
        return 1
    for pod in items:
        name: str = pod.metadata.name
        print(f"==> pod {name} <==")
        print(core.read_namespaced_pod_log(name, ns, tail_lines=args.tail), end="")
    return 0


def build_parser(prog: str = "kubesft") -> argparse.ArgumentParser:
    from kubesft.client.connect import add_connection_flags

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_connection_flags(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="print, write or check the generated CRDs")
    crds.add_argument("--write", action="store_true", help="write them to --output-dir")
    crds.add_argument("--check", action="store_true", help="fail if --output-dir is stale")
    crds.add_argument("--output-dir", type=Path, default=DEFAULT_CRD_DIR)
    crds.set_defaults(func=_cmd_crds)

    ref = sub.add_parser("reference", help="Markdown reference of every field")
    ref.add_argument("--write", action="store_true")
    ref.add_argument("--check", action="store_true")
    ref.add_argument("--output", type=Path, default=Path("docs/api-reference.md"))
    ref.set_defaults(func=_cmd_reference)

    validate = sub.add_parser("validate", help="validate SFTDataset/SFTJob manifests offline")
    validate.add_argument("files", nargs="+", type=Path)
    validate.set_defaults(func=_cmd_validate)

    status = sub.add_parser("status", help="human summary of an SFTJob")
    status.add_argument("name")
    status.add_argument("--namespace", "-n")
    status.add_argument("--watch", "-w", action="store_true", help="follow until it finishes")
    status.add_argument("--interval", type=float, default=2.0)
    add_connection_flags(status, top_level=False)
    status.set_defaults(func=_cmd_status)

    logs = sub.add_parser("logs", help="the trainer's logs of an SFTJob")
    logs.add_argument("name")
    logs.add_argument("--namespace", "-n")
    logs.add_argument("--tail", type=int, default=None)
    add_connection_flags(logs, top_level=False)
    logs.set_defaults(func=_cmd_logs)

    operator = sub.add_parser("operator", help="the kubesft operator")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    run = operator_sub.add_parser("run", help="reconcile SFTDatasets and SFTJobs")
    run.add_argument(
        "--namespace", "-n", action="append", default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )  # fmt: skip
    run.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="probe endpoint")
    run.add_argument("--log-format", choices=("text", "json"), default="json")
    run.add_argument("--verbose", "-v", action="store_true")
    run.set_defaults(func=_cmd_operator_run)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "kubesft") -> int:
    args = build_parser(prog).parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
