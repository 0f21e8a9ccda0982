"""Session fixtures: the bundled model loaded once by our engine, and once by transformers as the reference."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from local_engine import AsyncEngine, default_model_path, load_engine


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads that wait on each other
    make every matmul many times slower. Restored when the session ends."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_path() -> str:
    return default_model_path()


@pytest.fixture(scope="session")
def engine(model_path: str) -> Iterator[AsyncEngine]:
    # float32, unquantized: the path that must equal transformers exactly
    with load_engine(model_path, dtype="float32", max_batch=4, max_model_len=1024, threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def hf_model(model_path: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(model_path), gguf_file=os.path.basename(model_path), dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="session")
def hf_tokenizer(model_path: str) -> Any:
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(os.path.dirname(model_path), gguf_file=os.path.basename(model_path))
