"""Label masks pinned token by token for chatml and llama3, built without the code under test."""

from __future__ import annotations

import pytest

from kubesft.api.job import Training
from kubesft_trainer import data
from kubesft_trainer.chat_template import (
    load_builtin_template,
    render_conversation,
    resolve_chat_template,
)
from kubesft_trainer.exit_codes import UserError
from kubesft_trainer.masking import IGNORE_INDEX, tokenize_example, tokenize_examples
from tests.support.tiny_model import build_tiny_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You are a model that answers questions."},
    {"role": "user", "content": "What is the weather in paris?"},
    {"role": "assistant", "content": "Call weather paris."},
    {"role": "tool", "content": "sunny 21"},
    {"role": "assistant", "content": "It is sunny in paris, 21 degrees."},
    {"role": "user", "content": "Thanks! And tokyo?"},
    {"role": "assistant", "content": "Sure: rainy in tokyo."},
]


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chatml_pieces(messages) -> list[tuple[str, bool]]:
    """Hand-written ChatML text as (piece, graded): assistant content and its <|im_end|>."""
    pieces = []
    for message in messages:
        is_assistant = message["role"] == "assistant"
        pieces += [
            (f"<|im_start|>{message['role']}\n", False),
            (message["content"] + "<|im_end|>", is_assistant),
            ("\n", False),
        ]
    return pieces


def llama3_pieces(messages) -> list[tuple[str, bool]]:
    """Hand-written Llama 3 text; tool results sit under the ipython header."""
    pieces = [("<|begin_of_text|>", False)]
    for message in messages:
        header = "ipython" if message["role"] == "tool" else message["role"]
        pieces += [
            (f"<|start_header_id|>{header}<|end_header_id|>\n\n", False),
            (message["content"] + "<|eot_id|>", message["role"] == "assistant"),
        ]
    return pieces


def expected_tokens(tokenizer, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Tokenize the whole text (BPE merges cross piece edges, e.g. the llama3 newlines) and
    grade a token when the characters it decodes to lie inside a graded piece."""
    text = "".join(piece for piece, _ in pieces)
    ids = encode(tokenizer, text)
    graded_chars = [graded for piece, graded in pieces for _ in piece]
    labels, position = [], 0
    for token in ids:
        width = len(tokenizer.decode([token], skip_special_tokens=False))
        inside = graded_chars[position : position + width]
        assert all(inside) or not any(inside), "a token straddles a graded edge"
        labels.append(token if inside and inside[0] else IGNORE_INDEX)
        position += width
    assert position == len(text)
    return ids, labels


def graded_runs(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """Decode each maximal run of graded tokens."""
    runs: list[list[int]] = []
    previous_graded = False
    for token, label in zip(ids, labels, strict=True):
        graded = label != IGNORE_INDEX
        if graded:
            assert label == token
            if not previous_graded:
                runs.append([])
            runs[-1].append(token)
        previous_graded = graded
    return [tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def assistant_texts(end_of_turn: str, messages=CONVERSATION) -> list[str]:
    return [m["content"] + end_of_turn for m in messages if m["role"] == "assistant"]


@pytest.mark.parametrize("trim_offsets", [False, True])
def test_chatml_grades_exactly_assistant_content_and_im_end(trim_offsets: bool) -> None:
    tokenizer = build_tiny_tokenizer(trim_offsets=trim_offsets)
    result = tokenize_example(
        {"messages": CONVERSATION},
        tokenizer,
        loss_on="assistant",
        max_seq_length=1024,
        chat_template=load_builtin_template("chatml"),
    )
    ids, labels = expected_tokens(tokenizer, chatml_pieces(CONVERSATION))
    assert result.input_ids == ids
    assert result.labels == labels
    assert graded_runs(tokenizer, result.input_ids, result.labels) == assistant_texts("<|im_end|>")
    assert not result.truncated and not result.dropped


def test_llama3_grades_exactly_assistant_content_and_eot_id(tiny_tokenizer) -> None:
    result = tokenize_example(
        {"messages": CONVERSATION},
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=1024,
        chat_template=load_builtin_template("llama3"),
    )
    ids, labels = expected_tokens(tiny_tokenizer, llama3_pieces(CONVERSATION))
    assert result.input_ids == ids
    assert result.labels == labels
    assert graded_runs(tiny_tokenizer, ids, labels) == assistant_texts("<|eot_id|>")


def test_completion_mode_on_messages_grades_only_last_assistant_turn(tiny_tokenizer) -> None:
    result = tokenize_example(
        {"messages": CONVERSATION},
        tiny_tokenizer,
        loss_on="completion",
        max_seq_length=1024,
        chat_template=load_builtin_template("chatml"),
    )
    assert graded_runs(tiny_tokenizer, result.input_ids, result.labels) == [
        "Sure: rainy in tokyo.<|im_end|>"
    ]


def test_completion_mode_grades_completion_and_eos_only(tiny_tokenizer) -> None:
    prompt, completion = "What is two plus two?", " Two plus two equals 4."
    result = tokenize_example(
        {"prompt": prompt, "completion": completion},
        tiny_tokenizer,
        loss_on="completion",
        max_seq_length=1024,
    )
    prompt_ids = encode(tiny_tokenizer, prompt)
    completion_ids = [*encode(tiny_tokenizer, completion), tiny_tokenizer.eos_token_id]
    assert result.input_ids == prompt_ids + completion_ids
    assert result.labels == [IGNORE_INDEX] * len(prompt_ids) + completion_ids
    assert graded_runs(tiny_tokenizer, result.input_ids, result.labels) == [
        completion + "<|endoftext|>"
    ]


def test_all_mode_grades_every_token_after_the_first(tiny_tokenizer) -> None:
    template = load_builtin_template("chatml")
    for example in ({"messages": CONVERSATION}, {"text": "Hello world 12."}):
        result = tokenize_example(
            example, tiny_tokenizer, loss_on="all", max_seq_length=1024, chat_template=template
        )
        assert result.labels == [IGNORE_INDEX, *result.input_ids[1:]]


def test_text_example_ends_with_eos_and_is_fully_graded(tiny_tokenizer) -> None:
    result = tokenize_example(
        {"text": "Hello world 12."}, tiny_tokenizer, loss_on="assistant", max_seq_length=64
    )
    assert result.input_ids == [*encode(tiny_tokenizer, "Hello world 12."), 0]
    assert result.num_graded == len(result.input_ids) - 1


def test_truncation_keeps_prompt_start_and_a_cut_response(tiny_tokenizer) -> None:
    template = load_builtin_template("chatml")
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Sure here is the result of the sum of two numbers."},
    ]
    full = tokenize_example(
        {"messages": messages},
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=1024,
        chat_template=template,
    )
    cut = len(full.input_ids) - 3
    result = tokenize_example(
        {"messages": messages},
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=cut,
        chat_template=template,
    )
    assert result.input_ids == full.input_ids[:cut]
    assert result.labels == full.labels[:cut]
    assert result.truncated and not result.dropped


def test_truncation_flags_dropped_when_no_response_token_survives(tiny_tokenizer) -> None:
    messages = [
        {"role": "user", "content": "What is the weather " * 20},
        {"role": "assistant", "content": "Sunny."},
    ]
    result = tokenize_example(
        {"messages": messages},
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=16,
        chat_template=load_builtin_template("chatml"),
    )
    prompt_start = encode(tiny_tokenizer, "<|im_start|>user\nWhat is the weather ")
    assert len(result.input_ids) == 16
    assert result.input_ids[: len(prompt_start)] == prompt_start
    assert result.truncated and result.dropped and result.num_graded == 0


def test_template_rerendering_history_trains_one_turn_per_example(tiny_tokenizer) -> None:
    # The count in front changes with every turn, so no turn keeps its history's rendering.
    template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    (per_turn,) = tokenize_examples(
        [{"messages": CONVERSATION}],
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=1024,
        chat_template=template,
    )
    texts = [tiny_tokenizer.decode(e.input_ids, skip_special_tokens=False) for e in per_turn]
    assert [text.split("\n")[0][:1] for text in texts] == ["3", "5", "7"]
    graded = [graded_runs(tiny_tokenizer, e.input_ids, e.labels) for e in per_turn]
    assert graded == [[m["content"]] for m in CONVERSATION if m["role"] == "assistant"]
    with pytest.raises(ValueError, match="becomes 3 examples"):
        tokenize_example(
            {"messages": CONVERSATION},
            tiny_tokenizer,
            loss_on="assistant",
            max_seq_length=1024,
            chat_template=template,
        )


def test_template_without_generation_prompt_grades_content_not_header(tiny_tokenizer) -> None:
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    result = tokenize_example(
        {"messages": CONVERSATION[1:3]},
        tiny_tokenizer,
        loss_on="assistant",
        max_seq_length=1024,
        chat_template=template,
    )
    assert graded_runs(tiny_tokenizer, result.input_ids, result.labels) == ["Call weather paris."]


def test_unknown_role_is_rejected(tiny_tokenizer) -> None:
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        tokenize_example(
            {"messages": [{"role": "narrator", "content": "Once"}]},
            tiny_tokenizer,
            loss_on="assistant",
            max_seq_length=64,
            chat_template=load_builtin_template("chatml"),
        )


def test_auto_template_prefers_tokenizer_template_then_chatml(tiny_tokenizer) -> None:
    assert resolve_chat_template("auto", tiny_tokenizer) == load_builtin_template("chatml")
    own = build_tiny_tokenizer()
    own.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_chat_template("auto", own) == own.chat_template
    assert resolve_chat_template("llama3", own) == load_builtin_template("llama3")
    assert resolve_chat_template("{{ messages }}", own) == "{{ messages }}"
    with pytest.raises(ValueError, match=r"spec\.model\.chatTemplate"):
        resolve_chat_template("vicuna", own)


def test_rendering_matches_apply_chat_template(tiny_tokenizer) -> None:
    for name in ("chatml", "llama3"):
        template = load_builtin_template(name)
        for add_generation_prompt in (False, True):
            assert render_conversation(
                CONVERSATION[:2],
                template,
                tiny_tokenizer,
                add_generation_prompt=add_generation_prompt,
            ) == tiny_tokenizer.apply_chat_template(
                CONVERSATION[:2],
                chat_template=template,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
    assert render_conversation(
        CONVERSATION[:1],
        load_builtin_template("llama3"),
        tiny_tokenizer,
        add_generation_prompt=True,
    ) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are a model that answers questions.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


MIXED_EXAMPLES = [
    {"messages": CONVERSATION},
    {"prompt": "Capital of France?", "completion": "Paris."},
    {"messages": [{"role": "assistant", "content": "I speak first."}]},
    {"text": "Plain text to learn from."},
    {"messages": CONVERSATION[1:3]},
]


@pytest.mark.parametrize("loss_on", ["assistant", "completion", "all"])
def test_batched_tokenization_equals_one_example_at_a_time(tiny_tokenizer, loss_on) -> None:
    options = {
        "loss_on": loss_on,
        "max_seq_length": 24,
        "chat_template": load_builtin_template("chatml"),
    }
    batched = tokenize_examples(MIXED_EXAMPLES, tiny_tokenizer, **options)
    single = [[tokenize_example(example, tiny_tokenizer, **options)] for example in MIXED_EXAMPLES]
    assert batched == single


def test_split_names_the_line_of_a_bad_row_in_a_batch(tiny_tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(data, "TOKENIZE_BATCH", 2)
    rows = [*MIXED_EXAMPLES[:3], {"messages": [{"role": "narrator", "content": "Once"}]}]
    with pytest.raises(UserError, match=r"train.jsonl line 4: messages\[0\]\.role"):
        data.tokenize_split(
            rows, tiny_tokenizer, Training(), load_builtin_template("chatml"), "train.jsonl"
        )
    # A prepared row keeps its number in the dataset's source: the error names that.
    rows[3] = {**rows[3], "row": 17}
    with pytest.raises(UserError, match=r"^row 17: messages\[0\]\.role"):
        data.tokenize_split(
            rows, tiny_tokenizer, Training(), load_builtin_template("chatml"), "train.jsonl"
        )


def test_split_names_a_row_the_tokenizer_refuses_while_other_chunks_are_in_flight(
    monkeypatch,
) -> None:
    """Encoding runs on a second thread, chunks ahead of rendering; its error still names
    the row, and the split leaves Python's garbage collector as it found it."""
    import gc

    tokenizer = build_tiny_tokenizer()
    tokenizer.eos_token = None  # text rows need an eos; chat rows do not
    monkeypatch.setattr(data, "TOKENIZE_BATCH", 2)
    chat = {"messages": CONVERSATION[1:3]}
    rows = [chat] * 7 + [{"text": "Plain text to learn from."}] + [chat] * 6
    with pytest.raises(UserError, match=r"train.jsonl line 8: the tokenizer has no eos_token"):
        data.tokenize_split(
            rows, tokenizer, Training(), load_builtin_template("chatml"), "train.jsonl"
        )
    assert gc.isenabled()
    # In order across chunks: each row's example is the one it gives alone.
    varied = [{"messages": CONVERSATION[: 3 + 2 * (i % 3)]} for i in range(9)]
    split = data.tokenize_split(
        varied, tokenizer, Training(), load_builtin_template("chatml"), "train.jsonl"
    )
    alone = [
        tokenize_example(
            row,
            tokenizer,
            loss_on="assistant",
            max_seq_length=Training().max_seq_length,
            chat_template=load_builtin_template("chatml"),
        )
        for row in varied
    ]
    assert [e.input_ids for e in split.examples] == [e.input_ids for e in alone]
    assert [e.labels for e in split.examples] == [e.labels for e in alone]


def test_template_without_generation_prompt_does_not_grade_its_answer_header(
    tiny_tokenizer,
) -> None:
    # Issue 9's case: the answer "A" first occurs inside the header "### Answer:", so finding
    # the turn by searching for its text graded "Answer: A<eos>".
    template = (
        "{% for m in messages %}{% if m['role']=='user' %}### Question: {{ m['content'] }}\n"
        "{% else %}### Answer: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
    )
    row = {
        "messages": [
            {"role": "user", "content": "Which one is a mammal? A) whale B) shark"},
            {"role": "assistant", "content": "A"},
        ]
    }
    result = tokenize_example(
        row, tiny_tokenizer, loss_on="assistant", max_seq_length=1024, chat_template=template
    )
    assert graded_runs(tiny_tokenizer, result.input_ids, result.labels) == ["A<|endoftext|>"]


def test_a_row_the_template_refuses_names_its_source_row(tiny_tokenizer) -> None:
    # Gemma's own template requires alternating user/assistant turns.
    from importlib import resources

    gemma = (resources.files("trl") / "chat_templates" / "gemma.jinja").read_text()
    rows = [
        {"messages": CONVERSATION[1:3], "row": 1},
        {
            "messages": [
                {"role": "user", "content": "One."},
                {"role": "user", "content": "Two."},
                {"role": "assistant", "content": "Three."},
            ],
            "row": 9,
        },
    ]
    with pytest.raises(
        UserError, match=r"^row 9: chat template .*spec\.model\.chatTemplate.*roles must alternate"
    ):
        data.tokenize_split(rows, tiny_tokenizer, Training(), gemma, "train.jsonl")


def test_split_counts_and_logs_per_turn_expansion(tiny_tokenizer, caplog) -> None:
    template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    rows = [{"messages": CONVERSATION}, {"messages": CONVERSATION[1:3]}]
    with caplog.at_level("INFO", logger="kubesft_trainer.data"):
        split = data.tokenize_split(rows, tiny_tokenizer, Training(), template, "train.jsonl")
    # Only the conversation with several assistant turns is split: 3 turns, 2 examples added.
    assert (split.expanded_rows, split.added_examples, len(split.examples)) == (1, 2, 4)
    assert "1 of 2 conversations are trained one assistant turn per example" in caplog.text
