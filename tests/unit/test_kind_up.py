"""`hack/kind/up`: CI has no Docker, so its dry run and shellcheck stand in for running it."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "kind" / "up"


def dry_run(*args: str) -> list[str]:
    result = subprocess.run(
        [str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_prints_the_whole_sequence_in_order() -> None:
    commands = dry_run("--name", "demo")
    expected = [
        "kind create cluster --name demo",
        "docker build -t kubesft/operator:kind -f operator/Dockerfile .",
        "docker build -t kubesft/trainer:kind -f trainer-image/Dockerfile .",
        "kind load docker-image --name demo kubesft/operator:kind kubesft/trainer:kind",
        "kubectl --context kind-demo apply --server-side -f crds/",
        "helm --kube-context kind-demo install kubesft helm/kubesft",
        "kubectl --context kind-demo apply -f examples/quickstart/data.yaml",
        "kubectl --context kind-demo wait --for=condition=Complete",
        "kubectl --context kind-demo apply -f examples/quickstart/",
        ".venv/bin/kubesft status quickstart --watch --context kind-demo",
    ]
    assert len(commands) == len(expected), commands
    for command, start in zip(commands, expected, strict=True):
        assert command.startswith(start), (command, start)
    helm = commands[5]
    assert "trainer.image=kubesft/trainer:kind" in helm and "image.pullPolicy=Never" in helm
    # Every file given with -f exists (run from /: the script finds the repository).
    for command in commands:
        words = command.split()
        for flag, path in itertools.pairwise(words):
            if flag == "-f":
                assert (ROOT / path).exists(), command


def test_unknown_arguments_are_refused_with_the_usage() -> None:
    result = subprocess.run([str(SCRIPT), "--dryrun"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown argument: --dryrun" in result.stderr and "usage:" in result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (Debian/Ubuntu: apt-get install shellcheck)"
    result = subprocess.run(
        [shellcheck, str(SCRIPT), str(ROOT / "hack" / "demo")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
