"""`kubectl sft`: the kubesft command as a kubectl plugin.

kubectl runs any executable named `kubectl-<name>` on PATH for `kubectl <name>`, passing
the remaining arguments and nothing else (no connection, no namespace), see
https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/. The `kubectl-sft`
console script (pyproject) is that executable; it reads `--kubeconfig`, `--context` and
`-n` itself, exactly as kubectl resolves them (`kubesft.client.connect`).
"""

from __future__ import annotations

from collections.abc import Sequence

from kubesft import cli

PROG = "kubectl sft"


def main(argv: Sequence[str] | None = None) -> int:
    """`kubectl sft ARGS` ≡ `kubesft ARGS`, with usage and help naming `kubectl sft`."""
    return cli.main(argv, prog=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
