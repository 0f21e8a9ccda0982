"""Adapters are read only from the local provider's model roots (``providers/local.py``).

A model name can come from a request (``model="local/<base>+<adapter>"``), so an adapter path is
confined as a model file is: an absolute path must lie inside a root (symlinks resolved), a
relative name is looked up under each root, and without roots no adapter is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import openai
import pytest

import gateway
import local_engine
from providers.local import adapter_path, model_roots


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


def test_roots_come_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SWITCHYARD_MODEL_ROOTS", f"{tmp_path}/a{os.pathsep}{tmp_path}/b")
    assert model_roots({}) == [f"{tmp_path}/a", f"{tmp_path}/b"]
    assert model_roots({"model_roots": f"{tmp_path}{os.pathsep}{tmp_path}/c"}) == [
        str(tmp_path),
        f"{tmp_path}/c",
    ]
    monkeypatch.delenv("SWITCHYARD_MODEL_ROOTS")
    assert model_roots({}) == []


def test_an_adapter_resolves_inside_the_roots_only(tmp_path: Path) -> None:
    roots = [str(tmp_path / "adapters")]
    inside = _adapter(tmp_path / "adapters" / "city")
    outside = _adapter(tmp_path / "elsewhere" / "city")
    assert adapter_path(local_engine, "city", roots) == inside.resolve()
    assert adapter_path(local_engine, str(inside), roots) == inside.resolve()
    with pytest.raises(local_engine.ModelPathError, match="outside the allowed roots"):
        adapter_path(local_engine, str(outside), roots)
    with pytest.raises(local_engine.ModelPathError, match="outside the allowed roots"):
        adapter_path(local_engine, "../elsewhere/city", roots)
    (tmp_path / "adapters" / "link").symlink_to(outside)
    with pytest.raises(local_engine.ModelPathError, match="outside the allowed roots"):
        adapter_path(local_engine, "link", roots)
    with pytest.raises(local_engine.ModelPathError, match="model_roots"):
        adapter_path(local_engine, str(inside), [])


def test_a_request_naming_an_adapter_anywhere_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWITCHYARD_MODEL_ROOTS", raising=False)
    planted = _adapter(tmp_path / "planted")
    client = gateway.OpenAI(api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=f"local/smollm2-135m-instruct+{planted}", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 400 and "model_roots" in caught.value.message
