"""kubesft: fine-tune LLMs on Kubernetes with SFTDataset and SFTJob resources.

Commands: `status` and `logs` read an SFTJob on the cluster of your kubeconfig; `validate`
checks manifests offline with the operator's own rules; `crds` and `reference` print the
CRDs and the field reference generated from the API models; `operator run` runs the
operator. Failures are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kubesft.cli.errors import CLIError
from kubesft.cli.manifests import DEFAULT_CRD_DIR, cmd_crds, cmd_reference, cmd_validate

__all__ = ["CLIError", "build_parser", "main"]

INTERRUPTED = 130
"""Exit status after Ctrl-C, as shells report a SIGINT."""


def _cmd_operator_run(args: argparse.Namespace) -> int:
    """Run the operator in this process until interrupted."""
    from kubesft.operator.run import run_operator

    run_operator(args.namespace, args.liveness, args.log_format, args.verbose)
    return 0


def _cluster_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from kubesft.cli.cluster import add_connection_arguments, cmd_logs, cmd_status

    status = sub.add_parser(
        "status",
        help="progress, loss, conditions and samples of an SFTJob",
        description="Show an SFTJob as a person reads it: phase, progress and ETA, losses, "
        "output location, conditions and before/after samples. Exit 1 if -w ends in Failed.",
    )
    status.add_argument("name", help="SFTJob name")
    add_connection_arguments(status)
    status.add_argument("--watch", "-w", action="store_true", help="follow until it finishes")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between reads (-w)")
    status.set_defaults(func=cmd_status)

    logs = sub.add_parser(
        "logs",
        help="the trainer's logs of an SFTJob",
        description="Print the trainer container's log of every pod of an SFTJob, oldest "
        "first (a retried job has several). Needs nodes that serve logs (kubelet); with the "
        "local node runner the logs are files, see README.md, Troubleshooting.",
    )
    logs.add_argument("name", help="SFTJob name")
    add_connection_arguments(logs)
    logs.add_argument("--tail", type=int, default=None, help="only the last N lines of each pod")
    logs.add_argument(
        "--follow", "-f", action="store_true",
        help="keep streaming the newest pod's log (waits for the pod to start); Ctrl-C stops",
    )  # fmt: skip
    logs.add_argument("--interval", type=float, default=2.0, help="seconds between waits (-f)")
    logs.set_defaults(func=cmd_logs)


def _manifest_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = sub.add_parser(
        "validate",
        help="validate SFTDataset/SFTJob manifests offline",
        description="Check kubesft objects in YAML/JSON manifests with the rules the API "
        "server and the operator apply (metadata.name included); other kinds are skipped. "
        "Exit 1 with one line per problem.",
    )
    validate.add_argument(
        "files", nargs="+", metavar="FILE",
        help="a manifest, a folder of .yaml/.yml/.json files, or - for stdin",
    )  # fmt: skip
    validate.add_argument("--recursive", "-R", action="store_true", help="folders: descend")
    validate.set_defaults(func=cmd_validate)

    crds = sub.add_parser("crds", help="print, write or check the generated CRDs")
    crds.add_argument("--write", action="store_true", help="write them to --output-dir")
    crds.add_argument("--check", action="store_true", help="exit 1 if --output-dir is stale")
    crds.add_argument("--output-dir", type=Path, default=DEFAULT_CRD_DIR, help="default: crds")
    crds.set_defaults(func=cmd_crds)

    ref = sub.add_parser("reference", help="Markdown reference of every field")
    ref.add_argument("--write", action="store_true", help="write it to --output")
    ref.add_argument("--check", action="store_true", help="exit 1 if --output is stale")
    ref.add_argument("--output", type=Path, default=Path("docs/api-reference.md"))
    ref.set_defaults(func=cmd_reference)


def build_parser(prog: str = "kubesft") -> argparse.ArgumentParser:
    """The command line; `prog` is `kubectl sft` when run as the kubectl plugin."""
    from kubesft.client.connect import add_connection_flags

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_flags(parser, top_level=True)  # before the command too, as kubectl takes them
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _cluster_commands(sub)
    _manifest_commands(sub)
    operator = sub.add_parser("operator", help="run the kubesft operator")
    operator_sub = operator.add_subparsers(dest="operator_command", required=True)
    run = operator_sub.add_parser("run", help="reconcile SFTDatasets and SFTJobs until stopped")
    run.add_argument(
        "--namespace", "-n", action="append", default=[],
        help="watch this namespace (repeatable); default: all namespaces",
    )  # fmt: skip
    run.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="probe endpoint")
    run.add_argument("--log-format", choices=("text", "json"), default="json")
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    run.set_defaults(func=_cmd_operator_run)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "kubesft") -> int:
    """Run one command; user-facing failures are one `kubesft CMD: ...` line and exit 1."""
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.func(args)
    except CLIError as err:
        print(f"{prog} {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # `kubesft logs x | head`: quiet, and no error at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code
