"""`kubectl-sft`: the console script installed next to `kubesft` in the venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

VENV_BIN = Path(sys.executable).parent


def test_kubectl_sft_help_runs_from_the_installed_venv() -> None:
    script = VENV_BIN / "kubectl-sft"
    assert script.is_file(), f"{script} missing: reinstall with `pip install -e .`"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: kubectl sft ")
    for flag in ("--kubeconfig", "--context", "status", "logs"):
        assert flag in result.stdout


def test_kubeconfig_and_context_are_honoured_after_the_command_name(tmp_path: Path) -> None:
    """A context the kubeconfig lacks is refused by name, wherever the flag stands."""
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "real", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "real",
            }
        )
    )
    script = str(VENV_BIN / "kubectl-sft")
    for argv in (
        [script, "--kubeconfig", str(kubeconfig), "--context", "nope", "status", "x"],
        [script, "status", "x", "-n", "ns", f"--kubeconfig={kubeconfig}", "--context=nope"],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "context 'nope' not in the kubeconfig (real)" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
