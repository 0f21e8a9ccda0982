"""A bounds-checked GGUF reader.

Every count, length, dimension and offset is checked against the bytes that remain before anything
is allocated, so a truncated or hostile file fails with `ModelFileError` in milliseconds instead of
allocating gigabytes or crashing. Tensor data stays in the read-only memory map until asked for.

Spec: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (versions 2 and 3).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from local_engine.errors import ModelFileError
from local_engine.loader.quants import dequantize

__all__ = ["GGUFFile", "TensorInfo", "read_gguf"]

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 1 << 26  # 64 MiB: a chat template or a merge list entry never comes close
MAX_ARRAY_ITEMS = 1 << 24
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 40

# value type -> (struct format, size); 8 string and 9 array are handled apart
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
_NUMPY_SCALARS: dict[int, str] = {
    0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8",
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor: `shape` is numpy order (outermost first), `offset` absolute in the file."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    nbytes: int


class _Cursor:
    """Reads little-endian values from `buf`, refusing to step past its end."""

    def __init__(self, buf: mmap.mmap | bytes, path: str) -> None:
        self.buf, self.path, self.pos, self.end = buf, path, 0, len(buf)

    def fail(self, message: str, code: str, offset: int | None = None) -> ModelFileError:
        return ModelFileError(
            message, path=self.path, code=code, offset=self.pos if offset is None else offset
        )

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.end - self.pos:
            raise self.fail(f"{what} needs {n} bytes but {self.end - self.pos} remain", "gguf.truncated")

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, size = _SCALARS[vtype]
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar(4, what))

    def u64(self, what: str) -> int:
        return int(self.scalar(10, what))

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        start = self.pos
        length = self.u64(f"{what} length")
        if length > limit:
            raise self.fail(
                f"{what} is {length} bytes, over the limit of {limit}", "gguf.string-too-long", start
            )
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8", "gguf.bad-utf8", start) from exc

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.scalar(vtype, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY and depth == 0:
            return self.array(what)
        raise self.fail(f"{what} has unknown or nested value type {vtype}", "gguf.bad-value-type")

    def array(self, what: str) -> list[Any]:
        start = self.pos
        etype = self.u32(f"{what} element type")
        count = self.u64(f"{what} count")
        min_size = 8 if etype == _STRING else _SCALARS.get(etype, ("", 1))[1]
        if count > MAX_ARRAY_ITEMS or count * min_size > self.end - self.pos:
            raise self.fail(f"{what} claims {count} items, more than the file holds", "gguf.bad-count", start)
        if etype in _NUMPY_SCALARS:
            size = _SCALARS[etype][1]
            items = np.frombuffer(self.buf, dtype=_NUMPY_SCALARS[etype], count=count, offset=self.pos)
            self.pos += size * count
            return [bool(v) for v in items] if etype == 7 else items.tolist()
        if etype == _STRING:
            return self.strings(count, what)
        return [self.value(etype, f"{what}[{i}]", depth=1) for i in range(count)]

    def strings(self, count: int, what: str) -> list[str]:
        """`count` strings in a row: the vocabulary's hot loop, so written flat."""
        buf, pos, end, unpack = self.buf, self.pos, self.end, _U64.unpack_from
        out: list[str] = []
        for index in range(count):
            if end - pos < 8:
                raise self.fail(f"{what}[{index}] length is past the end of the file", "gguf.truncated", pos)
            (length,) = unpack(buf, pos)
            if length > MAX_STRING_BYTES or length > end - pos - 8:
                raise self.fail(f"{what}[{index}] is {length} bytes, past the end", "gguf.truncated", pos)
            try:
                out.append(buf[pos + 8 : pos + 8 + length].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise self.fail(f"{what}[{index}] is not valid UTF-8", "gguf.bad-utf8", pos) from exc
            pos += 8 + length
        self.pos = pos
        return out


class GGUFFile:
    """A parsed GGUF file: `metadata`, `tensors` by name, and `tensor(name)` to dequantize one."""

    def __init__(self, path: str, version: int, metadata: dict[str, Any], tensors: dict[str, TensorInfo],
                 buf: mmap.mmap | bytes) -> None:  # fmt: skip
        self.path, self.version, self.metadata, self.tensors = path, version, metadata, tensors
        self._buf = buf

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes, a read-only view of the map: [nbytes] uint8."""
        info = self.tensors[name]
        return np.frombuffer(self._buf, dtype=np.uint8, count=info.nbytes, offset=info.offset)

    def tensor(self, name: str) -> np.ndarray:
        """The tensor dequantized to float32, in numpy order (outermost dimension first)."""
        info = self.tensors[name]
        return dequantize(self.raw(name), info.ggml_type, info.shape, path=self.path, name=name)

    def close(self) -> None:
        if isinstance(self._buf, mmap.mmap):
            try:
                self._buf.close()
            except BufferError:  # a caller still holds a `raw()` view: the map closes when it is freed
                pass


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse the header of a GGUF file and check every tensor's extent.

    Raises:
        ModelFileError: the file is truncated, malformed, or claims more than it holds.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 24:
            raise ModelFileError(
                f"file is {size} bytes, too short for a GGUF header", path=path, code="gguf.truncated"
            )
        buf = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        cursor = _Cursor(buf, path)
        version, metadata, infos = _read_header(cursor)
        tensors = _place_tensors(cursor, metadata, infos)
    except BaseException:
        buf.close()
        raise
    return GGUFFile(path, version, metadata, tensors, buf)


def _read_header(
    cursor: _Cursor,
) -> tuple[int, dict[str, Any], list[tuple[str, tuple[int, ...], int, int, int]]]:
    cursor.need(4, "magic")
    if bytes(cursor.buf[0:4]) != MAGIC:
        raise cursor.fail("not a GGUF file (bad magic)", "gguf.bad-magic", 0)
    cursor.pos = 4
    version = cursor.u32("version")
    if version not in (2, 3):
        raise cursor.fail(f"GGUF version {version} is not supported (2 and 3 are)", "gguf.bad-version", 4)
    n_tensors, n_kv = cursor.u64("tensor count"), cursor.u64("kv count")
    # every kv takes at least 8+4+1 bytes and every tensor info at least 8+4+8+4+8
    if n_tensors > MAX_TENSORS or n_tensors * 32 > cursor.end - cursor.pos:
        raise cursor.fail(f"tensor count {n_tensors} is more than the file can hold", "gguf.bad-count", 8)
    if n_kv > MAX_KV or n_kv * 13 > cursor.end - cursor.pos:
        raise cursor.fail(f"kv count {n_kv} is more than the file can hold", "gguf.bad-count", 16)
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        start = cursor.pos
        key = cursor.string("key", limit=MAX_KEY_BYTES)
        if key in metadata:
            raise cursor.fail(f"duplicate metadata key {key!r}", "gguf.duplicate-key", start)
        metadata[key] = cursor.value(cursor.u32(f"{key} type"), key)
    infos = [_read_tensor_info(cursor) for _ in range(n_tensors)]
    return version, metadata, infos


def _read_tensor_info(cursor: _Cursor) -> tuple[str, tuple[int, ...], int, int, int]:
    start = cursor.pos
    name = cursor.string("tensor name", limit=MAX_KEY_BYTES)
    n_dims = cursor.u32(f"{name} n_dims")
    if not 1 <= n_dims <= MAX_DIMS:
        raise cursor.fail(f"tensor {name!r} has {n_dims} dimensions", "gguf.bad-dims", start)
    dims = [cursor.u64(f"{name} dim") for _ in range(n_dims)]
    elements = 1
    for dim in dims:
        elements *= dim
        if dim == 0 or elements > MAX_ELEMENTS:
            raise cursor.fail(f"tensor {name!r} has dimensions {dims}", "gguf.bad-dims", start)
    ggml_type = cursor.u32(f"{name} type")
    if (
        ggml_type not in GGMLQuantizationType._value2member_map_
        or GGMLQuantizationType(ggml_type) not in GGML_QUANT_SIZES
    ):
        raise cursor.fail(f"tensor {name!r} has unknown type {ggml_type}", "gguf.unknown-tensor-type", start)
    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    if dims[0] % block:
        raise cursor.fail(
            f"tensor {name!r} row of {dims[0]} is not a multiple of block {block}", "gguf.bad-dims", start
        )
    offset = cursor.u64(f"{name} offset")
    return name, tuple(reversed(dims)), ggml_type, offset, elements // block * type_size


def _place_tensors(cursor: _Cursor, metadata: dict[str, Any],
                   infos: list[tuple[str, tuple[int, ...], int, int, int]]) -> dict[str, TensorInfo]:  # fmt: skip
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or not 0 < alignment <= 1 << 16 \
            or alignment & (alignment - 1):  # fmt: skip
        raise cursor.fail(f"general.alignment {alignment!r} is not a power of two", "gguf.bad-alignment", 0)
    data_start = -(-cursor.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, shape, ggml_type, offset, nbytes in infos:
        if name in tensors:
            raise cursor.fail(f"duplicate tensor name {name!r}", "gguf.duplicate-tensor", data_start)
        if offset % alignment:
            raise cursor.fail(
                f"tensor {name!r} offset {offset} is not aligned to {alignment}", "gguf.bad-alignment"
            )
        if data_start + offset + nbytes > cursor.end:
            raise cursor.fail(
                f"tensor {name!r} ends past the end of the file", "gguf.truncated", data_start + offset
            )
        tensors[name] = TensorInfo(name, shape, ggml_type, data_start + offset, nbytes)
    spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in tensors.values())
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise cursor.fail(f"tensors {first!r} and {second!r} overlap", "gguf.overlapping-tensors", begin)
    return tensors
