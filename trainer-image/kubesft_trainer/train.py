"""`train`: the SFT recipe, top to bottom.

config → tokenizer and data → preflight → model → resume or start → eval and samples
before → training loop (progress, eval, checkpoints) → final eval and samples after →
outputs (adapter or model, tokenizer, chat template, resolved config; merged model if
asked) → summary. Run by every rank under `accelerate launch`; only the main process
reports and writes outputs. One run per process: accelerate's state is process-global.

Output directory:
- `model/`: adapter (lora/qlora) or full model as safetensors, tokenizer, chat_template.jinja
- `merged/`: base model with the adapter merged in (`spec.output.mergeAdapter`)
- `config.json`: the resolved trainer config (defaults applied) and the run plan
- `preflight.json`: token statistics and the GPU memory estimate
- `checkpoints/step-N/`, `metrics.jsonl`, `eval.json`, `loss.png`, `progress.json`
With `spec.output.url` the directory is local scratch mirrored to the bucket
(`remote_output.py`): checkpoints as they complete, results before Succeeded.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from kubesft.api.job_status import OutputInfo, Preflight
from kubesft.api.report import TrainerReason, TrainerTermination
from kubesft.api.runtime import TrainerConfig
from kubesft_trainer import (
    checkpoint,
    data,
    evaluate,
    health,
    preflight,
    report,
    results,
    sharding,
    sinks,
)
from kubesft_trainer.checkpoint import Progress
from kubesft_trainer.config import HALF_DTYPES, Precision, RunPlan, plan_run, resolve_precision
from kubesft_trainer.data import DataPosition, MicroBatchPlan
from kubesft_trainer.eval_sets import build_eval_set
from kubesft_trainer.held_out import describe_score, held_out_score
from kubesft_trainer.kube_status import KubeStatusSink
from kubesft_trainer.loop import (
    Session,
    build_optimizer,
    build_scheduler,
    evaluate_all_ranks,
    evaluate_before,
    train_loop,
)
from kubesft_trainer.members import (
    NamedSplit,
    RunData,
    describe_run_data,
    load_retention,
    load_run_data,
)
from kubesft_trainer.model import (
    ModelSource,
    describe_base_model,
    load_causal_lm,
    load_model,
    load_tokenizer,
    model_source,
    peft_quietly,
)
from kubesft_trainer.output_claim import MODEL_DIR, claim_output, require_resumable
from kubesft_trainer.permissions import share_files
from kubesft_trainer.remote_output import RemoteOutput
from kubesft_trainer.run_identity import RunIdentity
from kubesft_trainer.tracking import open_trackers

MERGED_DIR = "merged"
CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.json"
PREFLIGHT_FILE = "preflight.json"
SAMPLES_BEFORE_FILE = "samples_before.json"
"""Answers of the untrained model, kept so a resumed run can still compare before/after."""


@dataclasses.dataclass
class RunInputs:
    """Tokenizer, data and plan: everything known before the model is loaded."""

    tokenizer: Any
    chat_template: str
    data: RunData
    """Training epoch (the mixture), each member's eval split, the sample prompts' rows."""
    retention: NamedSplit | None
    micro_batches: MicroBatchPlan
    plan: RunPlan
    preflight: dict[str, Any]


def train(config: TrainerConfig) -> TrainerTermination | None:
    """Run the whole recipe; returns the final report on the main process, else None."""
    spec = config.spec
    accelerator, precision = start_accelerator(config)
    set_seed(spec.training.seed)  # the same adapter initialization on every rank
    run = RunIdentity.of(config)
    remote = open_remote_output(config, accelerator, run)
    claim_output(config, accelerator, run)
    source = model_source(spec, config.runtime)
    inputs = load_inputs(config, source, accelerator, precision)
    session = build_session(config, inputs, source, accelerator, precision)
    session.remote = remote
    progress = start_or_resume(session, run)
    session.reporter = open_reporter(config, accelerator, resume_step=progress.step)
    if session.reporter is not None and inputs.data.mixture is not None:
        session.reporter.mixture(inputs.data.mixture)  # on the resource before step 1
    prompts, references = evaluate.eval_prompts(inputs.data.eval_rows, spec.evaluation.samples)
    before = samples_before(session, inputs, prompts, fresh=progress.step == 0)
    if progress.step == 0:
        progress = evaluate_before(session, progress)
        set_seed(spec.training.seed + accelerator.process_index)  # dropout/noise differ by rank
    with health.guard_run(session, config, progress.step):
        progress = train_loop(session, progress)
    final = session.last_eval
    if session.eval_sets and session.last_eval_step != progress.step:
        final = evaluate_all_ranks(session)  # resumed after the last step: evaluate again
    after = _samples(session, inputs, prompts)
    summary: TrainerTermination | None = None
    # A sharded model is gathered whole on rank 0 (a collective step) before it is saved.
    full = sharding.full_state_dict(session.model) if sharding.is_sharded(session.model) else None
    if accelerator.is_main_process:
        output = save_outputs(config, session, inputs, source, state_dict=full)
        evaluation = None
        if final is not None:
            results.write_eval_json(
                session.output_dir, before, after, prompts, final, references=references
            )
            evaluation = results.evaluation_status(final, prompts, before, after)
            evaluation.held_out = held_out_score(before, after, references)
            if evaluation.held_out is not None:
                print(describe_score(evaluation.held_out), flush=True)
        if remote is not None:  # uploaded before the run may say Succeeded
            session.reporter.write_plot()
            remote.upload_results(session.output_dir)
            output.path = remote.url_of(Path(output.path), session.output_dir)
        summary = summarize(config, progress, inputs, output, final, session.stop_message)
        if evaluation is not None:
            summary.evaluation = evaluation
        summary = session.reporter.finish(summary, plot=remote is None)
    accelerator.wait_for_everyone()
    return summary


def open_remote_output(
    config: TrainerConfig, accelerator: Accelerator, run: RunIdentity
) -> RemoteOutput | None:
    """The s3 mirror of `spec.output.url`: writable, this run's, its latest checkpoint restored."""
    remote = RemoteOutput.for_spec(config.spec)
    if remote is not None and accelerator.is_main_process:
        remote.check_writable()
        remote.claim(run)
        step = remote.restore(Path(config.runtime.output_dir))
        if step is not None:
            print(f"restored checkpoint step-{step} from {remote.url}", flush=True)
    accelerator.wait_for_everyone()
    return remote


def start_accelerator(config: TrainerConfig) -> tuple[Accelerator, Precision]:
    """Precision for this machine and the accelerator (process group, device, autocast)."""
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    precision = resolve_precision(config.spec, cuda=cuda, bf16_supported=bf16)
    # cpu=True lets accelerate form a gloo process group when there is no GPU.
    return Accelerator(cpu=not cuda, mixed_precision=precision.mixed_precision), precision


def build_session(
    config: TrainerConfig,
    inputs: RunInputs,
    source: ModelSource,
    accelerator: Accelerator,
    precision: Precision,
) -> Session:
    """Load the model and its optimizer and schedule, and hand them to accelerate."""
    spec = config.spec
    loaded = load_model(spec, source, precision, device_index=accelerator.local_process_index)
    model: Any = loaded.model
    if sharding.strategy(spec, accelerator.num_processes) == "fsdp":
        compute = getattr(torch, HALF_DTYPES.get(precision.mixed_precision, "float32"))
        model = sharding.shard_model(model, accelerator.device, compute)
    optimizer: Any = build_optimizer(model, spec, inputs.plan.learning_rate)
    # The schedule is not prepared: accelerate would step it once per process.
    scheduler = build_scheduler(optimizer, spec, inputs.plan)
    if not sharding.is_sharded(model):  # DDP (and autocast) by accelerate
        model, optimizer = accelerator.prepare(model, optimizer)
    pad_id = inputs.tokenizer.pad_token_id
    retention = inputs.retention
    return Session(
        spec=spec,
        plan=inputs.plan,
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        attn_implementation=loaded.attn_implementation,
        train_examples=inputs.data.train.examples,
        micro_batches=inputs.micro_batches,
        eval_sets=[build_eval_set(n, spec, pad_id, accelerator) for n in inputs.data.evals],
        pad_id=pad_id,
        output_dir=Path(config.runtime.output_dir),
        retention=build_eval_set(retention, spec, pad_id, accelerator) if retention else None,
        by_dataset=inputs.data.mixture is not None,
    )


def open_reporter(
    config: TrainerConfig, accelerator: Accelerator, *, resume_step: int
) -> report.Reporter | None:
    """The main process reports; a resumed run continues its metrics.jsonl."""
    if not accelerator.is_main_process:
        return None
    runtime = config.runtime
    output_dir = Path(runtime.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sink: sinks.ProgressSink = sinks.FileSink(output_dir / PROGRESS_FILE)
    in_cluster = KubeStatusSink.from_environment(runtime.namespace, runtime.job_name)
    if in_cluster is not None:
        sink = sinks.FanOutSink(sink, in_cluster)
    return report.Reporter(
        output_dir,
        sink,
        runtime.termination_log,
        min_interval_s=runtime.progress_interval_seconds,
        resume_step=resume_step,
        metric_sinks=open_trackers(config, output_dir, resume_step=resume_step),
    )


def load_inputs(
    config: TrainerConfig, source: ModelSource, accelerator: Accelerator, precision: Precision
) -> RunInputs:
    """Tokenize every dataset's splits, draw the mixture, pack, plan the run and estimate
    its cost before loading weights."""
    spec, runtime = config.spec, config.runtime
    training = spec.training
    tokenizer, template = load_tokenizer(spec, source)
    run_data = load_run_data(spec, runtime.datasets, tokenizer, template)
    retention = None
    if runtime.retention is not None:
        retention = load_retention(spec, runtime.retention, tokenizer, template)
    train_split = run_data.train
    units = data.build_units(train_split.examples, training)
    micro_batches = MicroBatchPlan(
        units,
        micro_batch_size=training.micro_batch_size,
        world_size=accelerator.num_processes,
        rank=accelerator.process_index,
        seed=training.seed,
    )
    plan = plan_run(
        spec,
        micro_batches_per_epoch=micro_batches.per_rank,
        tokens_per_micro_batch=data.tokens_per_micro_batch(
            train_split.examples, units, training.micro_batch_size
        ),
        world_size=accelerator.num_processes,
        precision=precision,
    )
    model_config, num_params = describe_base_model(spec, source)
    estimate = preflight.run_preflight(
        spec,
        train_split,
        num_params,
        model_config=model_config,
        world_size=accelerator.num_processes,
    )
    _warn_if_infeasible(spec, estimate, accelerator)
    if accelerator.is_main_process:
        for line in describe_run_data(run_data, retention, training):
            print(line, flush=True)
        print(
            f"train: {train_split.rows} examples, {train_split.truncated} truncated to "
            f"{training.max_seq_length} tokens, {train_split.dropped} dropped (nothing graded); "
            f"{len(units)} units, {plan.total_steps} steps of {plan.gradient_accumulation} "
            f"micro-batches on {plan.world_size} rank(s)",
            flush=True,
        )
    return RunInputs(tokenizer, template, run_data, retention, micro_batches, plan, estimate)


def _warn_if_infeasible(spec: Any, estimate: dict[str, Any], accelerator: Any) -> None:
    """The estimate is pessimistic by design, so a miss is a warning, not a refusal."""
    if accelerator.device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(accelerator.device).total_memory / 1024**3
    problem = preflight.check_feasible(
        estimate, total, gpu_resource_name=spec.resources.gpu_resource_name
    )
    if problem and accelerator.is_main_process:
        print(f"warning: preflight: {problem}", file=sys.stderr, flush=True)


def start_or_resume(session: Session, run: RunIdentity) -> Progress:
    """Resume from the latest complete checkpoint of this run in the output directory, if any."""
    acc, output_dir = session.accelerator, session.output_dir
    if acc.is_main_process:
        checkpoint.remove_incomplete(output_dir)
    acc.wait_for_everyone()
    records = checkpoint.list_checkpoints(output_dir)
    if not records:
        return Progress(step=0, position=DataPosition(), world_size=acc.num_processes)
    require_resumable(run, session.spec, records[-1].path)
    progress = checkpoint.resume_from(
        records[-1], acc, session.model, session.optimizer, session.scheduler
    )
    if progress.world_size != acc.num_processes:
        position = progress.position.rescaled(progress.world_size, acc.num_processes)
        progress = dataclasses.replace(progress, position=position, world_size=acc.num_processes)
    if acc.is_main_process:
        print(f"resuming from {records[-1].path} (step {progress.step})", flush=True)
    return progress


def samples_before(
    session: Session, inputs: RunInputs, prompts: list[dict[str, Any]], *, fresh: bool
) -> list[str]:
    """Answers of the untrained model: generated on a fresh start, re-read on resume."""
    path = session.output_dir / SAMPLES_BEFORE_FILE
    if fresh:
        answers = _samples(session, inputs, prompts)
        if session.accelerator.is_main_process:
            path.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
        return answers
    if path.exists():
        return list(json.loads(path.read_text(encoding="utf-8")))
    return [""] * len(prompts)


def _samples(session: Session, inputs: RunInputs, prompts: list[dict[str, Any]]) -> list[str]:
    """Greedy answers from the main process; the other ranks wait."""
    answers: list[str] = []
    acc = session.accelerator
    # A sharded model's every forward is collective: all ranks generate, in lockstep.
    if prompts and (acc.is_main_process or sharding.is_sharded(session.model)):
        answers = evaluate.generate_samples(
            acc.unwrap_model(session.model),
            inputs.tokenizer,
            prompts,
            inputs.chat_template,
            session.spec.evaluation.max_new_tokens,
        )
    acc.wait_for_everyone()
    return answers if acc.is_main_process else []


def save_outputs(
    config: TrainerConfig,
    session: Session,
    inputs: RunInputs,
    source: ModelSource,
    *,
    state_dict: dict[str, Any] | None = None,
) -> OutputInfo:
    """Write model/, config.json and (if asked) merged/; returns the `output` status field.

    `state_dict`: the gathered weights of a sharded model, saved in place of its shards.
    """
    output_dir = session.output_dir
    model = session.accelerator.unwrap_model(session.model)
    model_dir = output_dir / MODEL_DIR
    is_adapter = hasattr(model, "peft_config")
    _inference_config(model)
    model.save_pretrained(model_dir, state_dict=state_dict)
    save_tokenizer(inputs.tokenizer, inputs.chat_template, model_dir)
    resolved = {
        "spec": config.spec.model_dump(by_alias=True, mode="json"),
        "runtime": config.runtime.model_dump(by_alias=True, mode="json"),
        "plan": dataclasses.asdict(inputs.plan),
    }
    (output_dir / CONFIG_FILE).write_text(json.dumps(resolved, indent=2) + "\n", "utf-8")
    preflight_doc = json.dumps(inputs.preflight, indent=2, default=str)
    (output_dir / PREFLIGHT_FILE).write_text(preflight_doc + "\n", "utf-8")
    share_files(model_dir)
    if is_adapter and config.spec.output.merge_adapter:
        merged_dir = output_dir / MERGED_DIR
        merge_adapter(source, model_dir, merged_dir, inputs)
        share_files(merged_dir)
        return OutputInfo(path=str(merged_dir), kind="merged")
    return OutputInfo(path=str(model_dir), kind="adapter" if is_adapter else "full")


def save_tokenizer(tokenizer: Any, chat_template: str, directory: Path) -> None:
    """Tokenizer files plus the chat template the model was trained with."""
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(directory)
    (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")


def merge_adapter(
    source: ModelSource, adapter_dir: Path, merged_dir: Path, inputs: RunInputs
) -> None:
    """Fold the adapter into a freshly loaded, unquantized base (exact even after qlora)."""
    from peft import PeftModel

    dtype = getattr(torch, HALF_DTYPES.get(inputs.plan.precision.mixed_precision, "float32"))
    base = load_causal_lm(source, dtype=dtype)
    with peft_quietly():
        merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(merged_dir)
    save_tokenizer(inputs.tokenizer, inputs.chat_template, merged_dir)


def _inference_config(model: Any) -> None:
    """Saved configs are for inference: the KV cache, off while training, comes back on."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True


def summarize(
    config: TrainerConfig,
    progress: Progress,
    inputs: RunInputs,
    output: OutputInfo,
    final: evaluate.EvalResult | None,
    stop_message: str | None = None,
) -> TrainerTermination:
    """The end of a finished run (the reporter adds progress, metrics, checkpoints);
    `stop_message` says why it stopped early when eval loss was not the reason."""
    stopped_early = progress.step < inputs.plan.total_steps
    loss = f", eval loss {final.loss:.4f}" if final is not None else ""
    why = f"{stop_message}; " if stopped_early and stop_message else ""
    return TrainerTermination(
        phase="Succeeded",
        reason=TrainerReason.EARLY_STOPPED if stopped_early else TrainerReason.COMPLETED,
        message=f"{why}trained {progress.step} steps{loss}; output in {output.path}",
        output=output,
        # The status keeps the estimate's headline fields; preflight.json has it all.
        preflight=Preflight.model_validate(inputs.preflight),
        fingerprint=report.run_fingerprint(config),
    )
