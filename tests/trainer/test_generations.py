"""Superseded prepared generations are removed beside a new one; nothing else is touched."""

from __future__ import annotations

import os
from pathlib import Path

from kubesft_trainer.generations import remove_superseded


def test_removes_older_key_folders_but_the_kept_newer_and_foreign_ones(tmp_path: Path) -> None:
    stem = tmp_path / "datasets" / "quickstart"
    names = ["g1", "g1-3fa9c2", "g2-aaaaaa", ".g2-bbbbbb.partial", "notes", "g3x", "g2-cccccc"]
    for name in names:
        (stem / name).mkdir(parents=True)
        os.utime(stem / name, (1000.0, 1000.0))
    (stem / "g9").write_text("a file, not a generation")
    (stem / "g2-dddddd").mkdir()  # written by a later preparation while this one ran

    removed = remove_superseded(stem / "g2-cccccc", keep={"g1"}, started=2000.0)

    assert removed == [".g2-bbbbbb.partial", "g1-3fa9c2", "g2-aaaaaa"]
    left = sorted(p.name for p in stem.iterdir())
    assert left == ["g1", "g2-cccccc", "g2-dddddd", "g3x", "g9", "notes"]
