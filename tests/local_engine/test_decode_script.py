"""The scripted CPU decode step (`models/decode_script.py`) computes what the modules compute, bit
for bit, in every dtype and quantization, alone and batched with unequal lengths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from local_engine import SamplingParams
from local_engine.engine.llm_engine import LLMEngine
from local_engine.layers.kv_cache import BatchMeta
from local_engine.models.decode_script import ScriptedDecode
from local_engine.settings import EngineSettings

pytestmark = pytest.mark.engine

PATHS = [("float32", "none"), ("bfloat16", "none"), ("bfloat16", "int8"), ("bfloat16", "int4")]
QUESTIONS = ["What is 2+2?", "Name three colours, and say one thing about each of them.", "Hi"]


def _load(model_path: str, dtype: str, quantization: str) -> LLMEngine:
    settings = EngineSettings(dtype=dtype, quantization=quantization, max_batch=4, max_model_len=512)
    return LLMEngine.from_settings(model_path, settings)


@pytest.mark.parametrize(("dtype", "quantization"), PATHS)
def test_scripted_decoding_equals_the_modules(model_path: str, dtype: str, quantization: str) -> None:
    engine = _load(model_path, dtype, quantization)
    scripted = engine.runner.scripted
    assert scripted is not None, "the scripted decode step is off on this CPU"
    prompts = [engine.tokenizer.encode_chat([{"role": "user", "content": q}]) for q in QUESTIONS]
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=True, top_logprobs=3)

    def run() -> list[tuple[list[int | None], list[float | None]]]:
        ids = [engine.add_request(p, params) for p in prompts]  # three at once: unequal lengths, a mask
        got: dict[str, tuple[list[int | None], list[float | None]]] = {i: ([], []) for i in ids}
        while engine.has_unfinished():
            for out in engine.step():
                got[out.request_id][0].append(out.event.token_id)
                got[out.request_id][1].append(out.event.logprob)
        return [got[i] for i in ids]

    fast = run()
    engine.runner.scripted = None
    assert run() == fast  # same tokens and the same float logprobs, exactly
    engine.runner.scripted = scripted
    assert run() == fast


@pytest.mark.parametrize(("dtype", "quantization"), [PATHS[0], PATHS[3]])
def test_scripted_logits_are_the_modules_logits_bit_for_bit(
    model_path: str, dtype: str, quantization: str
) -> None:
    engine = _load(model_path, dtype, quantization)
    runner, model = engine.runner, engine.runner.model
    scripted = runner.scripted
    assert scripted is not None
    block = runner.block_size
    # two sequences decoding at positions 37 and 90 (keys read through their own block tables)
    tables = [[3, 4, 5], [7, 8, 9, 10, 11, 12]]
    starts, tokens = [37, 90], torch.tensor([[101, 2002]])
    with torch.inference_mode():
        for table, start in zip(tables, starts, strict=True):  # fill the keys the decodes read
            prompt = torch.arange(1, start + 1)[None] % 400 + 20
            meta = BatchMeta.build([table], [0], [start], block, "cpu", 0)
            model(prompt, meta, last_only=True)
        meta = BatchMeta.build(tables, starts, [1, 1], block, "cpu", 2)
        assert meta.groups[0].mask is not None
        expected = model(tokens, meta, last_only=True)[0]  # [2, V]
        got = scripted(tokens, meta)
        one = BatchMeta.build(tables[:1], starts[:1], [1], block, "cpu", 1)
        alone = scripted(tokens[:, :1], one), model(tokens[:, :1], one, last_only=True)[0]
    assert got.shape == expected.shape == (2, model.config.vocab_size)
    assert torch.equal(got, expected)
    assert torch.equal(*alone)


def test_eager_on_request_and_for_unknown_layers(model_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _load(model_path, "float32", "none")
    model = engine.runner.model
    monkeypatch.setenv("LOCAL_ENGINE_EAGER", "1")
    assert ScriptedDecode.build(model) is None
    monkeypatch.delenv("LOCAL_ENGINE_EAGER")
    assert ScriptedDecode.build(model) is not None

    class Odd(nn.Linear):  # not a layer the script knows: the modules keep every step
        pass

    odd = Odd(model.config.hidden_size, model.config.hidden_size, bias=False)
    model.layers[0].attention.wo = odd
    with pytest.warns(RuntimeWarning, match="no scripted form for Odd"):
        assert ScriptedDecode.build(model) is None
