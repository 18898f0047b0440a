"""`kubesft operator run`: start kopf with kubesft's handlers."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import kopf


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors index without parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # kopf logs every successful handler call; kubesft logs the transitions that matter.
    for noisy in ("kubernetes", "urllib3", "aiohttp", "asyncio", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_operator(
    namespaces: Sequence[str], liveness: str | None, log_format: str, verbose: bool
) -> None:
    """Blocks until SIGINT/SIGTERM. Standalone: one replica, no peering objects needed."""
    import kubesft.operator.handlers  # noqa: F401  (registers the handlers)

    configure_logging(log_format, verbose)
    memo = kopf.Memo(namespaces=list(namespaces))
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
        memo=memo,
    )
