"""Build a decoder from a checkpoint on a device and dtype of the caller's choosing."""

from __future__ import annotations

import torch

from local_engine.errors import ModelFileError
from local_engine.loader.checkpoint import Checkpoint
from local_engine.models import ARCHITECTURES, LlamaForCausalLM

__all__ = ["build_model"]


def build_model(
    checkpoint: Checkpoint, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> LlamaForCausalLM:
    """Instantiate the checkpoint's architecture and load its weights (eval mode, no grad)."""
    config = checkpoint.config
    # parameters are created on "meta" (no memory, no init) and replaced by the checkpoint's
    model = ARCHITECTURES[config.architecture](config, device="meta")
    state = {
        name: torch.from_numpy(value).to(device=device, dtype=dtype)
        for name, value in checkpoint.weights.items()
    }
    rope_freqs = state.pop("rope_freqs", None)
    expected = set(model.state_dict())
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        missing = sorted(expected - set(model.state_dict(keep_vars=True)))
        raise ModelFileError(
            f"weights do not fit a {config.architecture} model: {exc}{missing}",
            path=checkpoint.path,
            code="model.bad-weights",
        ) from exc
    for name, param in model.named_parameters():
        if param.device.type == "meta":
            raise ModelFileError(
                f"weight {name!r} is missing", path=checkpoint.path, code="model.missing-weight"
            )
    inv_freq = model.inv_freq.to(device=device)
    if rope_freqs is not None:  # llama3-style frequency factors stored in the GGUF
        inv_freq = inv_freq / rope_freqs.float().reshape(-1)
    model.inv_freq = inv_freq
    return model.eval().requires_grad_(False)
