"""Command line of the trainer image: `python -m kubesft_trainer <subcommand> ...`.

Each subcommand returns an `ExitCode` (kubesft.api.report). A UserError becomes one line on
stderr and exit 2, which the Job does not retry; anything else prints its traceback and
exits 1, which the Job retries. Results also go to the termination message, where the
operator reads them from the pod.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kubesft.api.dataset import SFTDatasetSpec
from kubesft.api.errors import InvalidSpec, validate_model
from kubesft.api.job_status import Fingerprint
from kubesft.api.report import ExitCode, PrepareTermination, TrainerReason, TrainerTermination
from kubesft_trainer.config import load_config
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.generations import remove_superseded
from kubesft_trainer.health import RunStopped
from kubesft_trainer.prepare import DatasetInvalid, prepare_dataset
from kubesft_trainer.report import run_fingerprint
from kubesft_trainer.termination import write_termination_message

TERMINATION_LOG = Path("/dev/termination-log")


@dataclass(frozen=True)
class Subcommand:
    """One row of the command table: its name, help, arguments and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, required=True, help="SFTDataset spec as JSON")
    parser.add_argument("--output", type=Path, required=True, help="directory to write")
    parser.add_argument(
        "--source-path",
        type=Path,
        help="where the source is mounted (configMap, pvc); overrides spec.source",
    )
    parser.add_argument(
        "--eval-source-path",
        type=Path,
        help="where spec.split.evalSource is mounted; overrides it",
    )
    parser.add_argument(
        "--keep-generations",
        help="comma-separated generation folders beside --output to keep; once prepared, "
        "the other ones (superseded preparations) are removed",
    )
    _termination_argument(parser)


def run_prepare(args: argparse.Namespace) -> int:
    """Prepare an SFTDataset: train/eval JSONL and stats.json into --output."""
    started = time.time()
    log = _termination_log(args.termination_log)
    try:
        spec = load_dataset_spec(args.spec)
        result = prepare_dataset(
            spec, args.output, source_path=args.source_path, eval_source_path=args.eval_source_path
        )
    except DatasetInvalid as err:
        _prepare_failed(log, TrainerReason.DATASET_INVALID, str(err), err)
        raise
    except UserError as err:
        _prepare_failed(log, TrainerReason.INVALID_SPEC, str(err))
        raise
    except Exception as err:
        _prepare_failed(log, TrainerReason.PREPARE_ERROR, f"{type(err).__name__}: {err}")
        raise
    stats = result.stats
    message = f"prepared {stats.train} train and {stats.eval} eval examples ({stats.format})"
    done = PrepareTermination(
        phase="Ready",
        reason=TrainerReason.PREPARED,
        message=message,
        stats=stats,
        fingerprint=result.fingerprint,
        errors=list(result.errors),
    )
    write_termination_message(log, done)
    print(f"{message}, fingerprint {result.fingerprint[:12]}, in {result.output}")
    if args.keep_generations is not None:
        keep = {name for name in args.keep_generations.split(",") if name}
        removed = remove_superseded(result.output, keep, started=started)
        if removed:
            print(f"removed superseded generations: {', '.join(removed)}")
    return ExitCode.OK


def _prepare_failed(
    log: Path | None, reason: TrainerReason, message: str, err: DatasetInvalid | None = None
) -> None:
    failed = PrepareTermination(phase="Failed", reason=reason, message=message)
    if err is not None:
        failed.stats, failed.errors = err.stats, list(err.errors)
    write_termination_message(log, failed)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, required=True, help='trainer config JSON: {"spec", "runtime"}'
    )


def run_train(args: argparse.Namespace) -> int:
    """Fine-tune per an SFTJob spec; results go to runtime.outputDir."""
    try:
        config = load_config(args.config)
    except UserError as err:
        write_termination_message(_termination_log(None), _failure(TrainerReason.INVALID_SPEC, err))
        raise
    log = Path(config.runtime.termination_log)
    fingerprint = run_fingerprint(config)  # what was attempted, on failures too
    try:
        # Imported here: torch and transformers take seconds, and `prepare` needs neither.
        from kubesft_trainer.train import train

        summary = train(config)
    except RunStopped as err:  # preempted, hung or diverged: train() wrote the report
        print(f"{err.reason}: {err}", file=sys.stderr, flush=True)
        return int(err.exit_code)
    except UserError as err:  # the spec does not fit the data, the model or the node
        write_termination_message(log, _failure(err.reason, err, fingerprint))
        raise
    except Exception as err:
        write_termination_message(log, _failure(TrainerReason.TRAINING_ERROR, err, fingerprint))
        raise
    if summary is not None:
        print(summary.message)
    return ExitCode.OK


def _tiny_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument(
        "--corpus",
        type=Path,
        action="append",
        default=[],
        help="JSONL rows to train the tokenizer on (repeatable); none: one token per byte",
    )
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--intermediate-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--max-positions", type=int, default=512)
    parser.add_argument(
        "--pad-vocab-to",
        type=int,
        default=0,
        help="embedding rows at least this many (a realistic vocabulary for size benchmarks)",
    )
    parser.add_argument("--seed", type=int, default=0)


def run_tiny_model(args: argparse.Namespace) -> int:
    """Build a small Llama and a locally trained tokenizer into --out (no hub)."""
    from kubesft_trainer.tiny import TinyShape, corpus_texts, save_tiny_model

    shape = TinyShape(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        max_position_embeddings=args.max_positions,
    )
    try:
        params = save_tiny_model(
            args.out,
            corpus_texts(args.corpus),
            vocab_size=args.vocab_size,
            shape=shape,
            seed=args.seed,
            pad_vocab_to=args.pad_vocab_to,
        )
    except (OSError, ValueError) as err:
        raise UserError(f"tiny-model: {err}") from None
    print(f"tiny Llama with {params:,} parameters in {args.out}")
    return ExitCode.OK


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or hub repository id")
    parser.add_argument("--gguf-file", help="GGUF file inside --model to read the tokenizer from")
    parser.add_argument(
        "--chat-template",
        default="auto",
        help="auto, chatml, llama3, a Jinja file, or inline Jinja (as spec.model.chatTemplate)",
    )
    parser.add_argument(
        "--loss-on", choices=["assistant", "completion", "all"], default="assistant"
    )
    parser.add_argument("--data", type=Path, required=True, help="rows as JSONL, any format")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def run_inspect(args: argparse.Namespace) -> int:
    """Print each row as training renders it, graded text highlighted (or as JSON)."""
    from transformers import AutoTokenizer

    from kubesft_trainer.chat_template import resolve_chat_template
    from kubesft_trainer.inspect_rows import inspect_rows, print_rows

    options = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model, **options)
    except (OSError, ValueError) as err:
        raise UserError(f"--model {args.model}: cannot load its tokenizer: {err}") from None
    chat_template = args.chat_template
    if Path(chat_template).is_file():
        chat_template = Path(chat_template).read_text(encoding="utf-8")
    try:
        template = resolve_chat_template(chat_template, tokenizer)
    except ValueError as err:
        raise UserError(str(err).replace("spec.model.chatTemplate", "--chat-template")) from None
    errors = print_rows(inspect_rows(args.data, tokenizer, template, args.loss_on), args.json)
    return ExitCode.INVALID if errors else ExitCode.OK


def _failure(
    reason: TrainerReason, err: Exception, fingerprint: Fingerprint | None = None
) -> TrainerTermination:
    # A user error says what to change; anything else is named by its type.
    message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    return TrainerTermination(
        phase="Failed", reason=reason, message=message, fingerprint=fingerprint
    )


# One row per subcommand.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        "prepare",
        "validate, dedupe and split an SFTDataset into train/eval JSONL",
        _prepare_arguments,
        run_prepare,
    ),
    Subcommand(
        "train",
        "fine-tune a model on a prepared dataset as an SFTJob spec says",
        _train_arguments,
        run_train,
    ),
    Subcommand(
        "inspect",
        "preview the loss mask: each row rendered with its graded text highlighted",
        _inspect_arguments,
        run_inspect,
    ),
    Subcommand(
        "tiny-model",
        "build a small Llama and a locally trained tokenizer (demos, benchmarks; no hub)",
        _tiny_model_arguments,
        run_tiny_model,
    ),
)


def load_dataset_spec(path: Path) -> SFTDatasetSpec:
    """The SFTDatasetSpec in `path` (camelCase JSON); errors name the field to fix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read --spec {path}: {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"--spec {path} is not valid JSON: {err}") from None
    try:
        spec: SFTDatasetSpec = validate_model(SFTDatasetSpec, data, prefix="spec")
    except InvalidSpec as err:
        raise UserError(f"invalid spec: {err}") from None
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kubesft_trainer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except UserError as err:
        print(" ".join(str(err).split()), file=sys.stderr)  # one line, whatever it holds
        return ExitCode.INVALID
    except Exception:
        traceback.print_exc()
        return ExitCode.RETRYABLE
    return code


def _termination_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--termination-log",
        type=Path,
        help=f"file for the JSON result summary (default {TERMINATION_LOG} if writable)",
    )


def _termination_log(path: Path | None) -> Path | None:
    if path is not None:
        return path
    return TERMINATION_LOG if os.access(TERMINATION_LOG, os.W_OK) else None
