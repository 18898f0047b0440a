"""NEFTune noise: only in training, bounded per example by alpha / sqrt(L * d), removable."""

from __future__ import annotations

import torch

from kubesft_trainer.collate import collate_packed, collate_padded
from kubesft_trainer.masking import TokenizedExample
from kubesft_trainer.neftune import activate_neftune, example_lengths, noise_bound

ALPHA = 5.0


def examples_of(lengths: list[int], vocab_size: int) -> list[TokenizedExample]:
    generator = torch.Generator().manual_seed(1)
    examples = []
    for length in lengths:
        ids = torch.randint(8, vocab_size, (length,), generator=generator).tolist()
        examples.append(TokenizedExample(ids, ids))
    return examples


def embedding_noise(model, inputs) -> torch.Tensor:
    """What the hooked embedding layer adds to the clean lookup, captured on a forward."""
    embeddings = model.get_input_embeddings()
    seen: list[torch.Tensor] = []
    capture = embeddings.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    try:
        model(**inputs)
    finally:
        capture.remove()
    return seen[0] - embeddings.weight.detach()[inputs["input_ids"]]


def test_eval_mode_logits_and_generation_are_unaffected(tiny_model) -> None:
    model = tiny_model.eval()
    prompt = torch.tensor([[10, 20, 30, 40]])
    with torch.no_grad():
        clean_logits = model(input_ids=prompt).logits
        clean_tokens = model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=1)
        with activate_neftune(model, ALPHA):
            assert torch.equal(model(input_ids=prompt).logits, clean_logits)
            tokens = model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=1)
    assert torch.equal(tokens, clean_tokens)


def test_training_noise_per_packed_example_is_bounded_by_its_own_length(tiny_model) -> None:
    model = tiny_model.train()
    lengths = [3, 20, 60]
    batch = collate_packed(examples_of(lengths, model.config.vocab_size))
    hidden_size = model.config.hidden_size
    torch.manual_seed(0)
    with activate_neftune(model, ALPHA):
        noise = embedding_noise(model, batch.model_inputs("sdpa"))[0]
    starts = batch.cu_seq_lens.tolist()
    for index, length in enumerate(lengths):
        bound = noise_bound(ALPHA, length, hidden_size)
        peak = noise[starts[index] : starts[index + 1]].abs().max().item()
        # length * hidden_size uniform draws: the largest sits just under the bound.
        assert 0.95 * bound <= peak <= bound * (1 + 1e-6), (length, peak, bound)


def test_training_noise_in_padded_rows_uses_real_token_count(tiny_model) -> None:
    model = tiny_model.train()
    lengths = [4, 30]
    batch = collate_padded(examples_of(lengths, model.config.vocab_size), pad_token_id=1)
    with activate_neftune(model, ALPHA):
        noise = embedding_noise(model, batch.model_inputs("sdpa"))
    for row, length in enumerate(lengths):
        bound = noise_bound(ALPHA, length, model.config.hidden_size)
        peak = noise[row, :length].abs().max().item()
        assert 0.95 * bound <= peak <= bound * (1 + 1e-6), (length, peak, bound)


def test_removing_the_hook_restores_exact_embeddings(tiny_model) -> None:
    model = tiny_model.train()
    inputs = {"input_ids": torch.tensor([[10, 20, 30, 40, 50]]), "use_cache": False}
    handle = activate_neftune(model, ALPHA)
    assert embedding_noise(model, inputs).abs().max() > 0
    handle.remove()
    assert torch.equal(embedding_noise(model, inputs), torch.zeros(1, 5, model.config.hidden_size))
    handle.remove()  # idempotent


def test_example_lengths_split_packed_rows_where_positions_restart() -> None:
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 1, 2, 3]])
    lengths = example_lengths((1, 10), position_ids, None)
    assert lengths.tolist() == [[3, 3, 3, 2, 2, 1, 4, 4, 4, 4]]
    assert example_lengths((2, 3), None, None).tolist() == [[3, 3, 3], [3, 3, 3]]
