"""Fixtures for trainer tests: a tiny tokenizer and a tiny Llama, built locally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from tests.support.s3_server import S3Endpoint, s3_server
from tests.support.tiny_model import build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer) -> Path:
    """Tokenizer and model saved with `save_pretrained`, for tests that load from disk."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_tokenizer.save_pretrained(path)
    build_tiny_model(len(tiny_tokenizer)).save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tiny_model_dir: Path) -> LlamaForCausalLM:
    """A fresh fp32 copy per test, so training-mode and hook changes do not leak."""
    return LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    """The AWS_* environment of this test points at the loopback S3 endpoint."""
    for key, value in s3_endpoint.env().items():
        monkeypatch.setenv(key, value)
    return s3_endpoint
