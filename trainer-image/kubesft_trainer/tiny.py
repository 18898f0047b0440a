"""`tiny-model`: a small Llama with a tokenizer trained locally, for demos and benchmarks.

Nothing comes from the hub: a byte-level BPE tokenizer (the Llama 3 / Qwen / SmolLM
family) is trained on the given texts and the weights are initialized from a seed, so
an offline cluster or a laptop can run the whole fine-tuning loop in minutes. Without
texts the tokenizer has no merges: one token per byte, which encodes any text.
The folder holds what `from_pretrained` reads, with ChatML as the tokenizer's own chat
template and `<|im_end|>` among its special tokens, so generation stops at end of turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesft_trainer.chat_template import load_builtin_template

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN, "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinyShape:
    """Width and depth of the Llama; the defaults make ~0.5M parameters plus embeddings."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 512


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Any:
    """Byte-level BPE trained on `texts` with ChatML specials; EOS and PAD set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # untyped __init__
        tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.chat_template = load_builtin_template("chatml")
    return tokenizer


def build_model(vocab_size: int, shape: TinyShape = TinyShape(), seed: int = 0) -> Any:
    """A randomly initialized fp32 Llama of `shape`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_kv_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).float()  # type: ignore[no-untyped-call]  # untyped in torch


def save_tiny_model(
    out: Path,
    texts: Iterable[str] = (),
    *,
    vocab_size: int = 512,
    shape: TinyShape = TinyShape(),
    seed: int = 0,
    pad_vocab_to: int = 0,
) -> int:
    """Write tokenizer and model to `out`; returns the parameter count.

    `pad_vocab_to` gives the model at least that many embedding rows even when the
    tokenizer learned fewer tokens, so a benchmark model has a realistic vocabulary.
    """
    tokenizer = build_tokenizer(texts, vocab_size)
    model = build_model(max(len(tokenizer), pad_vocab_to), shape, seed)
    # The ids the model config names must be the tokenizer's, or generation never stops.
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def corpus_texts(paths: Iterable[Path]) -> Iterator[str]:
    """Every text field of JSONL rows (messages, prompt/completion, text), one string each."""
    for path in paths:
        with Path(path).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield from _row_texts(json.loads(line))


def _row_texts(row: Any) -> Iterator[str]:
    if not isinstance(row, dict):
        return
    for message in row.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            yield message["content"]
    for key in ("prompt", "completion", "text"):
        if isinstance(row.get(key), str):
            yield row[key]
