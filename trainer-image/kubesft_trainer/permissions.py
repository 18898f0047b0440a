"""Output files readable by whoever serves them.

The pinned safetensors writes weights with mode 0600 (it goes through a private temporary
file), while every other output is created per the process umask (0644 under the usual
022). A serving pod running as another user of the volume's fsGroup could then read
`config.json` but not the weights. Files are therefore set to what `open()` would have
created: 0666 minus the umask (0644 with umask 022), directories 0777 minus it.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def share_files(directory: Path) -> None:
    """chmod every file under `directory` to 0666 & ~umask, and each directory to 0777 & ~umask."""
    mask = current_umask()
    root = Path(directory)
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o777 & ~mask)
        elif path.is_file():
            path.chmod(0o666 & ~mask)
