"""`kubesft crds`, `kubesft reference` and `kubesft validate`: the API as files, offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from kubesft.api import InvalidSpec, parse_object
from kubesft.cli.errors import CLIError
from kubesft.crd import render_crds, write_crds

DEFAULT_CRD_DIR = Path("crds")


def cmd_crds(args: argparse.Namespace) -> int:
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


def cmd_reference(args: argparse.Namespace) -> int:
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


MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


def expand_inputs(arguments: Sequence[str], *, recursive: bool = False) -> list[str | Path]:
    """Files as given, a folder's .yaml/.yml/.json files (sorted), `-` for stdin, as kubectl -f.

    Raises CLIError for a path that does not exist or a folder without manifests.
    """
    inputs: list[str | Path] = []
    for argument in arguments:
        if argument == STDIN:
            inputs.append(STDIN)
            continue
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p
                for p in (path.rglob("*") if recursive else path.iterdir())
                if p.is_file() and p.suffix in MANIFEST_SUFFIXES
            )
            if not found:
                deep = " (add -R for sub-folders)" if not recursive else ""
                raise CLIError(f"{path}: no .yaml, .yml or .json files in this folder{deep}")
            inputs += found
        elif path.exists():
            inputs.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    return inputs


def iter_documents(text: str) -> Iterator[tuple[int, Any]]:
    """(1-based document index, object) for each YAML (or JSON) document in ``text``."""
    for index, doc in enumerate(yaml.safe_load_all(text), start=1):
        if doc is not None:
            yield index, doc


def name_problems(doc: dict[str, Any]) -> list[str]:
    """metadata.name is required by the apiserver (unless generateName is set); its format
    is checked by the models (`kubesft.api`), as for every other field."""
    meta = doc.get("metadata") or {}
    if isinstance(meta, dict) and (meta.get("name") or meta.get("generateName")):
        return []
    return ["metadata.name: is required (or set metadata.generateName)"]


def validate_text(label: str, text: str) -> tuple[int, list[str]]:
    """(kubesft objects found, problems) for the manifests in ``text``; other kinds skipped."""
    problems: list[str] = []
    try:
        docs = list(iter_documents(text))
    except yaml.YAMLError as exc:
        return 0, [f"{label}: cannot read YAML: {' '.join(str(exc).split())}"]
    objects = 0
    parsed: list[Any] = []
    for index, doc in docs:
        if not isinstance(doc, dict) or not str(doc.get("apiVersion", "")).startswith(
            "kubesft.io/"
        ):
            continue
        objects += 1
        name = (doc.get("metadata") or {}).get("name") or f"document {index}"
        where = f"{label}: {doc.get('kind')}/{name}"
        found = name_problems(doc)
        try:
            parsed.append(parse_object(doc))
        except InvalidSpec as exc:
            found += exc.problems
        problems += [f"{where}: {p}" for p in found]
    return objects, problems + [f"{label}: {p}" for p in cannot_act(parsed)]


def cannot_act(objects: Sequence[Any]) -> list[str]:
    """The operator's precheck, offline: SFTJob settings that cannot act with an SFTDataset
    given alongside (e.g. earlyStopping when the dataset makes no eval split)."""
    from kubesft.api import SFTDataset, SFTJob
    from kubesft.operator.precheck import precheck

    datasets = {o.metadata.name or "": o for o in objects if isinstance(o, SFTDataset)}
    return [
        f"SFTJob/{o.metadata.name}: {problem}"
        for o in objects
        if isinstance(o, SFTJob)
        for problem in precheck(o, datasets)  # members not given: not judged
    ]


def validate_documents(path: Path) -> list[str]:
    """Problems with the kubesft objects in the file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: cannot read: {exc}"]
    return validate_text(str(path), text)[1]


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate manifests offline against the same models the operator uses."""
    problems: list[str] = []
    objects = 0
    inputs = expand_inputs(args.files, recursive=args.recursive)
    for item in inputs:
        if item == STDIN:
            label, text = "<stdin>", sys.stdin.read()
        else:
            label = str(item)
            try:
                text = Path(item).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{label}: cannot read: {exc}")
                continue
        found, more = validate_text(label, text)
        objects += found
        problems += more
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(inputs)} file(s) valid ({objects} kubesft object(s))")
    return 0
