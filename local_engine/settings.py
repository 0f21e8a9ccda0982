"""`EngineSettings`: the knobs of `load_engine`, checked when they are built, with their defaults.

Each bad value raises `SettingsError`, whose `setting` names the field (`code` is
`settings.invalid`). Defaults that depend on the machine (dtype, quantization, batch size) are
resolved here from the device and, for the batch, from the memory the KV cache may take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from local_engine.errors import SettingsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_MAX_MODEL_LEN",
    "DEFAULT_PREFILL_CHUNK",
    "DTYPES",
    "KV_MEMORY_FRACTION",
    "MAX_DEFAULT_BATCH",
    "QUANTIZATIONS",
    "EngineSettings",
    "available_memory",
    "default_max_batch",
]

DEFAULT_MAX_MODEL_LEN = 2048
DEFAULT_BLOCK_SIZE = 16
DEFAULT_PREFILL_CHUNK = 256
KV_MEMORY_FRACTION = 0.1  # of the memory available at load time, for the default batch's KV cache
MAX_DEFAULT_BATCH = 64
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int8", "int4")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What `load_engine` takes besides the model path; `None` means "choose for this machine".

    - `device`: "cpu", "cuda", "cuda:N" or "mps".
    - `dtype`: "float32", "bfloat16" or "float16" (or the torch dtype). Default: bfloat16, except
      float32 off CUDA when `quantization` is "none".
    - `quantization`: "none", "int8" or "int4" weights (CPU only; activations in bfloat16).
      Default: "int4" on CPU when `dtype` is unset too, else "none".
    - `max_batch`: sequences decoded together. Default: as many full-length sequences as fit in
      `KV_MEMORY_FRACTION` of the available memory, at most `MAX_DEFAULT_BATCH`.
    - `max_model_len`: tokens per sequence, prompt included (capped by the model's context).
    - `kv_blocks`: KV cache blocks of `block_size` tokens; default `max_batch` full sequences.
    - `threads`: torch intra-op threads (process-wide); default min(2, cores).
    - `prefill_chunk`: tokens computed per step (decodes first, then prompt chunks).
    """

    device: str = "cpu"
    dtype: str | None = None
    quantization: str | None = None
    max_batch: int | None = None
    max_model_len: int = DEFAULT_MAX_MODEL_LEN
    kv_blocks: int | None = None
    threads: int | None = None
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    block_size: int = DEFAULT_BLOCK_SIZE
    prefix_caching: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", _device(self.device))
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        _choice("quantization", self.quantization, QUANTIZATIONS)
        for name in ("max_batch", "kv_blocks", "threads"):
            _positive(name, getattr(self, name), optional=True)
        for name in ("max_model_len", "prefill_chunk", "block_size"):
            _positive(name, getattr(self, name))
        if not isinstance(self.prefix_caching, bool):
            raise SettingsError("prefix_caching must be True or False", setting="prefix_caching")
        if self.quantization in ("int8", "int4"):
            if not self.device.startswith("cpu"):
                raise SettingsError(
                    f"quantization={self.quantization!r} runs on the CPU only; use device='cpu' or "
                    "quantization='none'",
                    setting="quantization",
                )
            if self.dtype not in (None, "bfloat16"):
                raise SettingsError(
                    f"quantization={self.quantization!r} computes in bfloat16; leave dtype unset or "
                    f"pass dtype='bfloat16' (got {self.dtype!r})",
                    setting="dtype",
                )

    def resolved(self) -> EngineSettings:
        """These settings with the device-dependent defaults filled in (max_batch aside, which
        needs the model: see `default_max_batch`)."""
        on_cuda = self.device.startswith("cuda")
        quantization = self.quantization
        if quantization is None:
            quantization = "int4" if self.device == "cpu" and self.dtype is None else "none"
        dtype = self.dtype
        if dtype is None:
            dtype = "bfloat16" if on_cuda or quantization != "none" else "float32"
        threads = self.threads if self.threads is not None else min(2, os.cpu_count() or 1)
        return replace(self, dtype=dtype, quantization=quantization, threads=threads)

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype or "float32")  # type: ignore[no-any-return]


def default_max_batch(kv_bytes_per_sequence: int, available: int) -> int:
    """Full-length sequences whose KV cache fits in `KV_MEMORY_FRACTION` of `available` bytes."""
    fit = int(available * KV_MEMORY_FRACTION) // max(kv_bytes_per_sequence, 1)
    return max(1, min(MAX_DEFAULT_BATCH, fit))


def available_memory(device: str) -> int:
    """Bytes free for the KV cache on `device`: CUDA's free memory, else Linux's MemAvailable."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # not Linux: fall back to sysconf below
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # unknown: assume 4 GiB


def _device(value: object) -> str:
    text = str(value)  # a torch.device prints as its name
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise SettingsError(f"device={text!r} is not one of 'cpu', 'cuda', 'cuda:N', 'mps'", setting="device")
    return text


def _dtype_name(value: object) -> str | None:
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise SettingsError(f"dtype={value!r} is not one of {', '.join(DTYPES)}", setting="dtype")
    return name


def _choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}", setting=name)


def _positive(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{name}={value!r} must be a positive integer", setting=name)
