"""The command line every benchmark shares: --work, --results and one flag per setting."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any


def bench_main(
    doc: str,
    settings_type: type[Any],
    benchmark: Callable[[Path, Any, Path], str],
    *,
    results: Path,
    work_help: str,
    prefix: str,
    argv: Sequence[str] | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
) -> int:
    """Parse flags from the settings dataclass, run in --work or a temp dir, print the summary.

    `--preset NAME` (when `presets` has names) changes the defaults of several settings at
    once; flags given beside it still win.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help=work_help)
    parser.add_argument("--results", type=Path, default=results)
    defaults = asdict(settings_type())
    if presets:
        chosen, _ = _preset_parser(presets).parse_known_args(argv)
        defaults |= presets[chosen.preset]
        parser.add_argument("--preset", choices=sorted(presets), default=chosen.preset)
    for name, default in defaults.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, dest=name)
    args = vars(parser.parse_args(argv))
    args.pop("preset", None)
    work, results_dir = args.pop("work"), args.pop("results")
    settings = settings_type(**args)
    if work is None:
        with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
            summary = benchmark(Path(temporary), settings, results_dir)
    else:
        summary = benchmark(work, settings, results_dir)
    print(summary)
    return 0


def _preset_parser(presets: Mapping[str, Mapping[str, Any]]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--preset", choices=sorted(presets), default=next(iter(presets)))
    return parser
