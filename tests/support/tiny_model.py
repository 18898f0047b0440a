"""Tiny tokenizer and Llama model built locally (no hub), shared by trainer and e2e tests."""

from __future__ import annotations

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]
LLAMA3_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, *CHATML_TOKENS, *LLAMA3_TOKENS]

WORDS = [
    *("the", "a", "model", "learns", "to", "answer", "questions", "about", "weather"),
    *("cities", "numbers", "tools", "and", "code", "what", "is", "how", "do", "you"),
    *("sum", "of", "two", "plus", "minus", "equals", "hello", "world", "thanks", "sure"),
    *("here", "result", "system", "user", "assistant", "tool", "ipython", "call"),
    *("returned", "sunny", "rainy", "paris", "tokyo", "lima"),
]


def synthetic_corpus(lines: int = 400, seed: int = 0) -> list[str]:
    """Short sentences with words, digits, punctuation and newlines, as chat data has."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(lines):
        words = rng.choices(WORDS, k=rng.randint(3, 12))
        number = rng.randint(0, 999)
        corpus.append(f"{' '.join(words).capitalize()} {number}{rng.choice('.?!:')}\n\n")
    return corpus


def build_tiny_tokenizer(trim_offsets: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE (the Llama 3 / Qwen / SmolLM family) with chatml and llama3 specials."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=trim_offsets)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(synthetic_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )


def build_tiny_model(vocab_size: int, attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    config._attn_implementation = attn_implementation
    return LlamaForCausalLM(config).float()
