"""The trainer image: its pins are what the tests run on, and it holds every module imported."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "trainer-image"


def test_requirements_pin_the_versions_the_tests_run_on() -> None:
    pins = {}
    for line in (IMAGE / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    assert {"torch", "transformers", "peft", "pydantic"} <= set(pins)
    installed = {name: metadata.version(name).split("+")[0] for name in pins}
    assert installed == pins, "update trainer-image/requirements.txt to the installed versions"


def test_the_image_copies_every_kubesft_module_the_trainer_imports() -> None:
    copied = re.findall(r"operator/(kubesft/\S+)", (IMAGE / "Dockerfile").read_text())
    imported = set()
    for path in (IMAGE / "kubesft_trainer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubesft."):
                imported.add(node.module)
            if isinstance(node, ast.ImportFrom) and node.module == "kubesft":
                imported.update(f"kubesft.{alias.name}" for alias in node.names)
    assert imported, "the trainer imports kubesft.api"
    for module in sorted(imported):
        parts = module.split(".")
        assert any(
            f"{'/'.join(parts[:depth])}{suffix}" in copied
            for depth in range(2, len(parts) + 1)
            for suffix in ("/", ".py")
        ), f"trainer-image/Dockerfile does not copy {module}"
