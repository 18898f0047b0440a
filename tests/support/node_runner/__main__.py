"""``python -m tests.support.node_runner``: run the fake node until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from tests.support.node_runner.runner import NodeRunner


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--label must be KEY=VALUE (got {pair!r})")
        labels[key] = value
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.node_runner",
        description="A fake node for a local control plane (test double: images are ignored).",
    )
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the cluster")
    parser.add_argument("--root", type=Path, required=True, help="directory for pods/pvcs/logs")
    parser.add_argument("--node-name", default="kubesft-local")
    parser.add_argument("--gpus", type=int, default=0, help="advertise N nvidia.com/gpu")
    parser.add_argument("--label", action="append", default=[], help="extra node label K=V")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    extended = {"nvidia.com/gpu": str(args.gpus)} if args.gpus else {}
    runner = NodeRunner(
        args.kubeconfig,
        args.root,
        node_name=args.node_name,
        labels=_labels(args.label),
        extended_resources=extended,
    )
    runner.start()
    try:
        while not done.wait(1.0):
            pass
    finally:
        runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
