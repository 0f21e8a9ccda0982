"""Build a decoder from a checkpoint on a device and dtype of the caller's choosing."""

from __future__ import annotations

import torch

from local_engine.config import ModelConfig
from local_engine.errors import ModelFileError
from local_engine.layers.quant import quantize_model
from local_engine.loader.checkpoint import Checkpoint
from local_engine.models import ARCHITECTURES, LlamaForCausalLM

__all__ = ["build_model"]


def check_weights_fit(config: ModelConfig, weights: dict[str, tuple[int, ...]], path: str) -> None:
    """Check the hyperparameters against the tensors actually present, before any module is built.

    A hostile header could otherwise claim a million layers and make even a "meta" model huge.
    """
    layers = {int(name.split(".")[1]) for name in weights if name.startswith("layers.")}
    problems = []
    if layers != set(range(config.num_layers)):
        problems.append(f"config says {config.num_layers} layers, the file has tensors for {len(layers)}")
    embedding = weights.get("tok_embeddings.weight")
    if embedding != (config.vocab_size, config.hidden_size):
        problems.append(
            f"token embedding is {embedding}, config says {(config.vocab_size, config.hidden_size)}"
        )
    if problems:
        raise ModelFileError("; ".join(problems), path=path, code="model.bad-weights")


def build_model(
    checkpoint: Checkpoint,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    quantization: str = "none",
) -> LlamaForCausalLM:
    """Instantiate the checkpoint's architecture and load its weights (eval mode, no grad).

    With `quantization` "int8" or "int4" the projections are quantized from the float32 weights
    (`layers/quant.py`) and run in `dtype`; the rest of the model stays float32, the KV cache
    is kept in `dtype`.

    Raises:
        ModelFileError: the weights are missing, extra, or of the wrong shape for the config.
    """
    config = checkpoint.config
    check_weights_fit(
        config, {name: value.shape for name, value in checkpoint.weights.items()}, checkpoint.path
    )
    # parameters are created on "meta" (no memory, no init) and replaced by the checkpoint's
    model = ARCHITECTURES[config.architecture](config, device="meta")
    load_dtype = dtype if quantization == "none" else torch.float32
    state = {
        name: torch.from_numpy(value).to(device=device, dtype=load_dtype)
        for name, value in checkpoint.weights.items()
    }
    rope_freqs = state.pop("rope_freqs", None)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"weights do not fit a {config.architecture} model: {exc}",
            path=checkpoint.path,
            code="model.bad-weights",
        ) from exc
    model.inv_freq = model.inv_freq.to(device=device)
    if rope_freqs is not None:  # llama3-style frequency factors stored in the GGUF: [D / 2]
        if rope_freqs.numel() != config.head_dim // 2:
            raise ModelFileError(
                "rope_freqs has the wrong size", path=checkpoint.path, code="model.bad-weights"
            )
        model.inv_freq = model.inv_freq / rope_freqs.float().reshape(-1)
    if quantization != "none":
        # the matmuls run in `dtype` (bfloat16); the residual stream, norms, attention and logits
        # stay float32, which keeps near-tied greedy choices close to the float32 model's
        quantize_model(model, quantization, dtype)
        model.kv_dtype = dtype
    return model.eval().requires_grad_(False)
