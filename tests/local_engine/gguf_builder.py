"""Builds GGUF bytes field by field, so tests can write valid files and break them on purpose."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {
    U8: "<B",
    I8: "<b",
    U16: "<H",
    I16: "<h",
    U32: "<I",
    I32: "<i",
    F32: "<f",
    BOOL: "<?",
    U64: "<Q",
    I64: "<q",
    F64: "<d",
}


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, value: object) -> bytes:
    return gguf_string(key) + struct.pack("<I", vtype) + encode_value(vtype, value)


def encode_value(vtype: int, value: object) -> bytes:
    if vtype == STRING:
        return gguf_string(value)  # type: ignore[arg-type]
    if vtype == ARRAY:
        etype, items = value  # type: ignore[misc]
        return struct.pack("<IQ", etype, len(items)) + b"".join(encode_value(etype, item) for item in items)
    return struct.pack(_FMT[vtype], value)


def tensor_info(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    return (
        gguf_string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


@dataclass
class GGUFBuilder:
    """A small valid GGUF: two kvs and one F32 tensor of [2, 4] (dims innermost first: [4, 2])."""

    version: int = 3
    kvs: list[bytes] = field(
        default_factory=lambda: [kv("general.architecture", STRING, "llama"), kv("x.n", U32, 7)]
    )
    infos: list[bytes] = field(default_factory=lambda: [tensor_info("token_embd.weight", [4, 2], 0, 0)])
    data: bytes = struct.pack("<8f", *range(8))
    alignment: int = 32
    n_tensors: int | None = None
    n_kv: int | None = None

    def build(self) -> bytes:
        n_tensors = len(self.infos) if self.n_tensors is None else self.n_tensors
        n_kv = len(self.kvs) if self.n_kv is None else self.n_kv
        head = (
            b"GGUF"
            + struct.pack("<IQQ", self.version, n_tensors, n_kv)
            + b"".join(self.kvs)
            + b"".join(self.infos)
        )
        padding = b"\0" * (-len(head) % self.alignment)
        return head + padding + self.data
