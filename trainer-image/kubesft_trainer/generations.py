"""Removing superseded prepared generations of a dataset from the data volume.

The operator files each preparation of an SFTDataset under `<stem>/<key>` (key:
`g<generation>[-<source digest>]`) and cannot reach the volume itself, so the preparation
pod, once its own folder is published, removes the sibling generations the operator did not
name as still read by a running SFTJob. Only folders shaped like a key are touched.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

KEY_FOLDER = re.compile(r"^\.?g\d+(-[0-9a-f]+)?(\.partial|\.old)?$")
"""`g3`, `g3-1a2b3c`, and leftovers of interrupted writes of them (`.g3.partial`)."""


def remove_superseded(output: Path, keep: set[str], *, started: float) -> list[str]:
    """Delete the siblings of ``output`` shaped like a generation key, not in ``keep``, and
    last modified before ``started`` (this preparation's start, epoch seconds): a folder a
    later preparation wrote meanwhile is newer than this one, never superseded by it.

    ``output`` itself is always kept. Returns the names removed, sorted.
    """
    output = Path(output)
    keep = {*keep, output.name}
    removed = []
    for path in sorted(output.parent.iterdir()) if output.parent.is_dir() else ():
        shaped = path.is_dir() and not path.is_symlink() and KEY_FOLDER.match(path.name)
        if shaped and path.name not in keep and path.stat().st_mtime < started:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed
