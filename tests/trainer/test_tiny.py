"""`tiny-model`: a tokenizer trained on the given texts and a Llama that loads and generates."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kubesft_trainer.cli import main
from kubesft_trainer.evaluate import stop_token_ids


def test_tiny_model_learns_its_corpus_words_and_loads_with_chatml(tmp_path, capsys) -> None:
    corpus = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "lease pod queue"}]}
    corpus.write_text(json.dumps(row) + "\n" + json.dumps({"text": "pod queue"}) + "\n")
    out = tmp_path / "tiny"

    code = main(["tiny-model", "--out", str(out), "--corpus", str(corpus), "--hidden-size", "32"])

    assert code == 0 and "parameters" in capsys.readouterr().out
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer.tokenize(" queue")) == 1  # a frequent corpus word is one token
    assert "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert model.config.hidden_size == 32
    assert model.config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_tiny_model_without_a_corpus_has_one_token_per_byte(tmp_path) -> None:
    assert main(["tiny-model", "--out", str(tmp_path), "--layers", "1"]) == 0

    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.tokenize("héllo") == ["h", "Ã", "©", "l", "l", "o"]


def test_tiny_model_shape_flags_set_heads_positions_and_padded_vocab(tmp_path) -> None:
    args = ["--hidden-size", "64", "--heads", "8", "--kv-heads", "4", "--max-positions", "2048"]
    assert main(["tiny-model", "--out", str(tmp_path), *args, "--pad-vocab-to", "1000"]) == 0

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_attention_heads"] == 8 and config["num_key_value_heads"] == 4
    assert config["max_position_embeddings"] == 2048
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer) < 1000 == config["vocab_size"]  # rows beyond the tokenizer's ids
