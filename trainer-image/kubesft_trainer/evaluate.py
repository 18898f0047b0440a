"""Evaluate: token-weighted loss, perplexity and token accuracy, and greedy sample answers.

Loss is the sum of token losses over every graded eval token divided by their count, the
same weighting the training loop uses, so eval and train losses are comparable whatever
the batch composition. Both functions switch the model to eval mode (dropout off, NEFTune
noise off) and give back the mode they found.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from kubesft_trainer.collate import PackedBatch, PaddedBatch
from kubesft_trainer.masking import IGNORE_INDEX, _bos_ids
from kubesft_trainer.turns import render_prompt

MAX_LOG_PERPLEXITY = 50.0
"""exp() cap: an untrained or diverged model reports a huge but finite perplexity."""
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")
"""End-of-turn markers of common chat templates (ChatML, Llama 3, Phi-3, Gemma)."""


@dataclass(frozen=True)
class EvalResult:
    """Eval metrics over `tokens` graded tokens."""

    loss: float
    perplexity: float
    token_accuracy: float
    tokens: int
    by_dataset: dict[str, EvalResult] = field(default_factory=dict)
    """Each member's own metrics (a mixture, `eval_sets`); empty for one dataset."""

    @classmethod
    def from_sums(cls, loss_sum: float, correct: int, count: int) -> EvalResult:
        """Metrics from (possibly all-reduced) sums of `loss_sums`."""
        if count <= 0:
            raise ValueError(
                "evaluation graded no tokens: the eval split is empty or every label is "
                "masked; check the dataset's eval split and spec.training.lossOn"
            )
        loss = loss_sum / count
        return cls(
            loss=loss,
            perplexity=math.exp(min(loss, MAX_LOG_PERPLEXITY)),
            token_accuracy=correct / count,
            tokens=count,
        )


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd inside; the caller's mode is restored on the way out."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def loss_sums(
    model: torch.nn.Module,
    batches: Iterable[PackedBatch | PaddedBatch],
    attn_implementation: str,
) -> tuple[float, int, int]:
    """(sum of token losses, correctly predicted tokens, graded tokens) over `batches`."""
    loss_sum, correct, count = 0.0, 0, 0
    device = _input_device(model)
    with eval_mode(model):
        for batch in batches:
            inputs = {
                key: value.to(device) if isinstance(value, torch.Tensor) else value
                for key, value in batch.model_inputs(attn_implementation).items()
            }
            logits = model(**inputs).logits
            # The logit at position t predicts the token at t + 1.
            labels = batch.labels.to(logits.device)[:, 1:]
            graded = labels != IGNORE_INDEX
            # Select graded positions before upcasting: (N, V) in fp32, not (T, V).
            scores = logits[:, :-1][graded].float()
            targets = labels[graded]
            loss_sum += float(F.cross_entropy(scores, targets, reduction="sum"))
            correct += int((scores.argmax(dim=-1) == targets).sum())
            count += int(targets.numel())
    return loss_sum, correct, count


def evaluate_loss(
    model: torch.nn.Module,
    batches: Iterable[PackedBatch | PaddedBatch],
    attn_implementation: str,
) -> EvalResult:
    """Token-weighted eval loss, perplexity and token accuracy on one process."""
    return EvalResult.from_sums(*loss_sums(model, batches, attn_implementation))


def generate_samples(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Mapping[str, Any]],
    chat_template: str,
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers to `prompts`, one at a time (no padding), decoded without specials."""
    stop_ids = stop_token_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    device = _input_device(model)
    answers = []
    with eval_mode(model):
        for prompt in prompts:
            ids = torch.tensor([prompt_ids(prompt, tokenizer, chat_template)], device=device)
            output = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                # Sampling knobs from the model's generation_config would only draw warnings.
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
                use_cache=True,
            )
            new_tokens = output[0, ids.shape[1] :].tolist()
            answers.append(tokenizer.decode(new_tokens, skip_special_tokens=True).strip())
    return answers


def prompt_ids(prompt: Mapping[str, Any], tokenizer: Any, chat_template: str) -> list[int]:
    """Token ids of a prompt exactly as training saw them before the answer."""
    if "messages" in prompt:
        text = render_prompt(prompt["messages"], chat_template, tokenizer, prompt.get("tools"))
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if "prompt" in prompt:
        encoded = tokenizer(str(prompt["prompt"]), add_special_tokens=False)["input_ids"]
        return _bos_ids(tokenizer) + list(encoded)
    raise ValueError(f"an eval prompt needs 'messages' or 'prompt' (got keys {sorted(prompt)})")


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS and the end-of-turn tokens the vocabulary has; generation stops at any of them."""
    vocab = tokenizer.get_vocab()
    ids = [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError(
            "the tokenizer has no eos_token and no known end-of-turn token, so generation "
            "cannot stop; use a model whose tokenizer defines one"
        )
    return list(dict.fromkeys(ids))


def eval_prompts(
    examples: Iterable[Mapping[str, Any]], n: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Prompts and reference answers of the first `n` eval examples that have an answer.

    A conversation is cut before its last assistant turn; `text` examples have no prompt
    and are skipped.
    """
    prompts: list[dict[str, Any]] = []
    references: list[str] = []
    for example in examples:
        if len(prompts) >= n:
            break
        conversational = isinstance(example.get("prompt"), list)
        if "messages" in example or conversational:
            messages = (
                [*example["prompt"], *example["completion"]]
                if conversational
                else list(example["messages"])
            )
            turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
            if not turns:
                continue
            tools = {"tools": example["tools"]} if example.get("tools") else {}
            prompts.append({"messages": messages[: turns[-1]], **tools})
            references.append(str(messages[turns[-1]]["content"]))
        elif "prompt" in example and "completion" in example:
            prompts.append({"prompt": example["prompt"]})
            references.append(str(example["completion"]))
    return prompts, references


def _input_device(model: Any) -> torch.device:
    """Where inputs go: the model's own device (peft models forward `.device`)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    parameter: torch.Tensor = next(model.parameters())
    return parameter.device
