"""LoRA tuning on a tiny random Llama (the bundled tokenizer, 2 layers of width 32): seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from local_engine.adapters import merge_adapter, read_adapter, write_adapter
from local_engine.config import ModelConfig
from local_engine.loader.checkpoint import Checkpoint, load_checkpoint
from local_engine.loader.paths import default_model_path
from local_engine.models.llama import LlamaForCausalLM
from local_engine.tokenizer import Tokenizer
from local_engine.tune import (
    TooLittleDataError,
    TuneConfig,
    encode_example,
    read_examples,
    to_adapter,
    train_lora,
)
from local_engine.tune.forward import causal_loss, frozen_hidden


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_gguf_metadata(load_checkpoint(default_model_path()).tokenizer_metadata)


def tiny_model(vocab: int) -> tuple[LlamaForCausalLM, dict[str, np.ndarray]]:
    config = ModelConfig(
        architecture="llama", hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        vocab_size=vocab, head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
        tie_word_embeddings=True, context_length=256, attention_bias=False, name="tiny",
    )  # fmt: skip
    generator = np.random.default_rng(0)
    shapes = {"tok_embeddings.weight": (vocab, 32), "norm.weight": (32,)}
    for i in range(2):
        shapes |= {
            f"layers.{i}.attention.wq.weight": (32, 32), f"layers.{i}.attention.wk.weight": (16, 32),
            f"layers.{i}.attention.wv.weight": (16, 32), f"layers.{i}.attention.wo.weight": (32, 32),
            f"layers.{i}.feed_forward.w1.weight": (64, 32), f"layers.{i}.feed_forward.w3.weight": (64, 32),
            f"layers.{i}.feed_forward.w2.weight": (32, 64), f"layers.{i}.attention_norm.weight": (32,),
            f"layers.{i}.ffn_norm.weight": (32,),
        }  # fmt: skip
    weights = {
        k: (np.ones(s) if k.endswith("norm.weight") else generator.normal(0, 0.2, s)).astype(np.float32)
        for k, s in shapes.items()
    }
    model = LlamaForCausalLM(config, device="meta")
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, assign=True)
    model.inv_freq = model.inv_freq.to("cpu")
    return model.eval().requires_grad_(False), weights


def examples(tokenizer: Tokenizer, count: int) -> list:
    labels = ["billing", "shipping", "technical", "account"]
    return [
        encode_example(
            [
                {"role": "user", "content": f"ticket about {labels[i % 4]}"},
                {"role": "assistant", "content": labels[i % 4]},
            ],
            tokenizer,
            128,
            i + 1,
        )  # fmt: skip
        for i in range(count)
    ]


def test_tune_lowers_validation_loss_deterministically(tokenizer: Tokenizer) -> None:
    model, _ = tiny_model(tokenizer.vocab_size)
    data = examples(tokenizer, 40)
    config = TuneConfig(epochs=3, batch_size=8, learning_rate=1e-2, top_layers=1, min_examples=20, seed=3)
    _, first = train_lora(model, data[:32], data[32:], config, progress=False)
    _, second = train_lora(model, data[:32], data[32:], config, progress=False)
    assert min(first.val_losses) < first.val_losses[0]
    assert first.train_losses == second.train_losses  # the seed makes it repeatable
    assert first.steps == 12 and first.train_examples == 32 and first.val_examples == 8


def test_adapter_round_trips_and_merges_to_the_trained_model(tokenizer: Tokenizer, tmp_path: Path) -> None:
    model, weights = tiny_model(tokenizer.vocab_size)
    data = examples(tokenizer, 24)
    config = TuneConfig(epochs=1, learning_rate=1e-2, top_layers=0, min_examples=8, seed=0,
                        targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))  # fmt: skip
    lora, _ = train_lora(model, data[:16], data[16:], config, progress=False)
    write_adapter(to_adapter(lora, "tiny"), tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["r"] == 8 and saved["layers_to_transform"] == [0, 1]
    adapter = read_adapter(tmp_path)
    assert sorted(adapter.weights) == sorted((i, m) for i in (0, 1) for m in config.targets)
    checkpoint = Checkpoint("tiny", model.config, dict(weights))
    merge_adapter(checkpoint, adapter)
    merged, _ = tiny_model(tokenizer.vocab_size)
    merged.load_state_dict({k: torch.from_numpy(v) for k, v in checkpoint.weights.items()}, assign=True)
    ids = torch.tensor([data[0].ids])
    labels = torch.tensor([data[0].labels])
    with torch.no_grad():
        with_lora = causal_loss(model, lora, frozen_hidden(model, lora, ids), labels)
        lora.pairs.clear()  # the merged model alone, through the same forward
        lora.pairs.update({"0-none": torch.nn.Identity()})
        lora.layers_ = (0,)
        alone = causal_loss(merged, lora, frozen_hidden(merged, lora, ids), labels)
    assert float(alone) == pytest.approx(float(with_lora), rel=1e-4)


def test_bad_lines_are_refused_with_their_numbers(tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    path.write_text(
        "\n".join([
            good, "{not json", json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}),
            json.dumps({"messages": [{"role": "user", "content": "word " * 400}, {"role": "assistant", "content": "x"}]}),
            json.dumps({"rows": []}), good,
        ]) + "\n"
    )  # fmt: skip
    data = read_examples(path, tokenizer, 128)
    assert [e.line for e in data.examples] == [1, 6]
    assert [(p.line, p.code) for p in data.problems] == [
        (2, "tune.bad-json"), (3, "tune.empty-reply"), (4, "tune.too-long"), (5, "tune.bad-messages"),
    ]  # fmt: skip
    model, _ = tiny_model(tokenizer.vocab_size)
    with pytest.raises(TooLittleDataError, match="2 training and 1 validation examples"):
        train_lora(model, data.examples, data.examples[:1], TuneConfig(), progress=False)
