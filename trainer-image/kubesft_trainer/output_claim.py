"""The run claims its output directory before the model loads, and resumes only its own
checkpoints (the record and the rule are in `run_identity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubesft.api.job import SFTJobSpec
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer import checkpoint, run_identity
from kubesft_trainer.run_identity import RunIdentity

MODEL_DIR = "model"
"""The final model's folder: a finished run's output, even without checkpoints."""


def claim_output(config: TrainerConfig, accelerator: Any, run: RunIdentity) -> None:
    """Refuse an output directory of another run (OutputInUse); else record this run in it.

    Only the main process checks: the other ranks wait, and the launcher stops them when it
    exits with OutputInUse.
    """
    output_dir = Path(config.runtime.output_dir)
    if accelerator.is_main_process:
        checkpoint.remove_incomplete(output_dir)
        used = bool(checkpoint.list_checkpoints(output_dir)) or (output_dir / MODEL_DIR).exists()
        where = run_identity.output_label(config.spec)
        run_identity.claim(output_dir, run, where=where, has_outputs=used)
    accelerator.wait_for_everyone()


def require_resumable(run: RunIdentity, spec: SFTJobSpec, record: Path) -> None:
    """Refuse to resume the checkpoint at ``record`` unless this run wrote it."""
    where = run_identity.output_label(spec)
    run_identity.require_own_checkpoint(run, record, where=where)
