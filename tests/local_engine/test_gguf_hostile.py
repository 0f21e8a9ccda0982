"""Hostile and truncated GGUF files are refused with `ModelFileError`, fast and without big allocations."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_engine.errors import ModelFileError
from local_engine.loader.checkpoint import config_from_gguf
from local_engine.loader.gguf import read_gguf
from tests.local_engine.gguf_builder import (
    ARRAY,
    BOOL,
    F32,
    STRING,
    U8,
    U32,
    U64,
    GGUFBuilder,
    gguf_string,
    kv,
    tensor_info,
)  # fmt: skip

Q8_0, Q4_1 = 8, 3
HUGE = 2**63


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path


def test_the_valid_base_file_reads(tmp_path: Path) -> None:
    gguf = read_gguf(_write(tmp_path, GGUFBuilder().build()))
    assert gguf.metadata == {"general.architecture": "llama", "x.n": 7}
    assert gguf.tensors["token_embd.weight"].shape == (2, 4)
    np.testing.assert_array_equal(
        gguf.tensor("token_embd.weight"), np.arange(8, dtype=np.float32).reshape(2, 4)
    )
    gguf.close()


def _kvs(*extra: bytes) -> list[bytes]:
    return [kv("general.architecture", STRING, "llama"), *extra]


def _info(name: str = "t", dims: list[int] | None = None, ggml_type: int = 0, offset: int = 0) -> list[bytes]:
    return [tensor_info(name, dims or [4, 2], ggml_type, offset)]


HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "gguf.truncated"),
    "ten bytes": (b"GGUF\3\0\0\0\0\0", "gguf.truncated"),
    "bad magic": (b"GGML" + GGUFBuilder().build()[4:], "gguf.bad-magic"),
    "version 1": (GGUFBuilder(version=1).build(), "gguf.bad-version"),
    "version 99": (GGUFBuilder(version=99).build(), "gguf.bad-version"),
    "tensor count 2^63": (GGUFBuilder(n_tensors=HUGE).build(), "gguf.bad-count"),
    "kv count 2^63": (GGUFBuilder(n_kv=HUGE).build(), "gguf.bad-count"),
    # the tensor info is then read as a kv: its name, then n_dims=2 as a type... ends past the file
    "kv count one too many": (GGUFBuilder(n_kv=3).build(), "gguf.string-too-long"),
    "key length 2^64-1": (
        GGUFBuilder(kvs=[struct.pack("<Q", 2**64 - 1) + b"abc"], infos=[]).build(),
        "gguf.string-too-long",
    ),
    "key length past end": (
        GGUFBuilder(kvs=[struct.pack("<Q", 60000) + b"abc"], infos=[]).build(),
        "gguf.truncated",
    ),
    "string value 2^62": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<IQ", STRING, 2**62)]).build(),
        "gguf.string-too-long",
    ),
    "string value past end": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<IQ", STRING, 4096)]).build(),
        "gguf.truncated",
    ),
    "unknown value type": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<I", 13) + b"\0" * 8]).build(),
        "gguf.bad-value-type",
    ),
    "string array 2^40 items": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<IIQ", ARRAY, STRING, 2**40)]).build(),
        "gguf.bad-count",
    ),
    "u32 array past end": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<IIQ", ARRAY, U32, 1000)]).build(),
        "gguf.bad-count",
    ),
    "nested array": (GGUFBuilder(kvs=[kv("k", ARRAY, (ARRAY, [(U8, [1])]))]).build(), "gguf.bad-value-type"),
    "array of unknown type": (
        GGUFBuilder(kvs=[gguf_string("k") + struct.pack("<IIQ", ARRAY, 77, 1) + b"\0" * 8]).build(),
        "gguf.bad-value-type",
    ),  # fmt: skip
    "duplicate key": (GGUFBuilder(kvs=_kvs(kv("x", U32, 1), kv("x", U32, 2))).build(), "gguf.duplicate-key"),
    "key not utf-8": (GGUFBuilder(kvs=[kv(b"\xff\xfe", U32, 1)]).build(), "gguf.bad-utf8"),
    "zero dimensions": (
        GGUFBuilder(infos=[gguf_string("t") + struct.pack("<I", 0) + struct.pack("<IQ", 0, 0)]).build(),
        "gguf.bad-dims",
    ),  # fmt: skip
    "five dimensions": (GGUFBuilder(infos=_info(dims=[1, 1, 1, 1, 8])).build(), "gguf.bad-dims"),
    "a dimension of 0": (GGUFBuilder(infos=_info(dims=[8, 0])).build(), "gguf.bad-dims"),
    "dimensions overflow 2^64": (GGUFBuilder(infos=_info(dims=[2**32, 2**32, 2])).build(), "gguf.bad-dims"),
    "dimensions of 2^63": (GGUFBuilder(infos=_info(dims=[HUGE])).build(), "gguf.bad-dims"),
    "unknown tensor type": (GGUFBuilder(infos=_info(ggml_type=99)).build(), "gguf.unknown-tensor-type"),
    "removed tensor type 4": (GGUFBuilder(infos=_info(ggml_type=4)).build(), "gguf.unknown-tensor-type"),
    "row not a multiple of the block": (
        GGUFBuilder(infos=_info(dims=[8, 2], ggml_type=Q8_0)).build(),
        "gguf.bad-dims",
    ),
    "offset not aligned": (GGUFBuilder(infos=_info(offset=3), data=b"\0" * 64).build(), "gguf.bad-alignment"),
    "offset past the end": (GGUFBuilder(infos=_info(offset=2**40)).build(), "gguf.truncated"),
    "offset near 2^64": (GGUFBuilder(infos=_info(offset=2**64 - 32)).build(), "gguf.truncated"),
    "data past the end": (GGUFBuilder(infos=_info(dims=[4096, 4096])).build(), "gguf.truncated"),
    "q4_1 data past the end": (
        GGUFBuilder(infos=_info(dims=[32 * 1024, 1024], ggml_type=Q4_1)).build(),
        "gguf.truncated",
    ),
    "duplicate tensor": (
        GGUFBuilder(infos=_info("t") + _info("t"), data=b"\0" * 64).build(),
        "gguf.duplicate-tensor",
    ),
    "overlapping tensors": (
        GGUFBuilder(infos=_info("a") + _info("b", dims=[2, 2]), data=b"\0" * 64).build(),
        "gguf.overlapping-tensors",
    ),  # fmt: skip
    "alignment 0": (GGUFBuilder(kvs=_kvs(kv("general.alignment", U32, 0))).build(), "gguf.bad-alignment"),
    "alignment 3": (GGUFBuilder(kvs=_kvs(kv("general.alignment", U32, 3))).build(), "gguf.bad-alignment"),
    "alignment 2^31": (
        GGUFBuilder(kvs=_kvs(kv("general.alignment", U32, 2**31))).build(),
        "gguf.bad-alignment",
    ),
    "alignment as a string": (
        GGUFBuilder(kvs=_kvs(kv("general.alignment", STRING, "32"))).build(),
        "gguf.bad-alignment",
    ),
    "alignment as a bool": (
        GGUFBuilder(kvs=_kvs(kv("general.alignment", BOOL, True))).build(),
        "gguf.bad-alignment",
    ),
    "tensor name 2^63 long": (
        GGUFBuilder(infos=[struct.pack("<Q", HUGE) + b"t"]).build(),
        "gguf.string-too-long",
    ),
    "tensor name not utf-8": (
        GGUFBuilder(infos=[gguf_string(b"\xc3") + _info()[0][9:]]).build(),
        "gguf.bad-utf8",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_refused_quickly(tmp_path: Path, name: str) -> None:
    data, code = HOSTILE[name]
    path = _write(tmp_path, data)
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        read_gguf(path)
    assert time.perf_counter() - start < 0.5
    assert info.value.code == code
    assert info.value.path == str(path)


def test_every_truncation_of_a_valid_file_is_refused(tmp_path: Path) -> None:
    data = GGUFBuilder(
        kvs=_kvs(kv("a.list", ARRAY, (STRING, ["x", "yy"])), kv("b", U64, 5), kv("c", F32, 0.5))
    ).build()
    start = time.perf_counter()
    for cut in range(len(data)):
        with pytest.raises(ModelFileError):
            read_gguf(_write(tmp_path, data[:cut]))
    assert time.perf_counter() - start < 5


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8))
def test_random_byte_flips_never_crash(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(GGUFBuilder(kvs=_kvs(kv("a.list", ARRAY, (U32, [1, 2, 3])))).build())
    for position, value in flips:
        if position < len(data):
            data[position] = value
    try:
        read_gguf(_write(tmp_path, bytes(data))).close()
    except ModelFileError:
        pass


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({"general.architecture": "llama"}, "gguf.missing-key"),
        ({"general.architecture": "llama", "llama.attention.head_count": "nine"}, "gguf.bad-key-type"),
        (
            {"general.architecture": "llama", "llama.attention.head_count": 9, "llama.embedding_length": 576,
             "llama.feed_forward_length": 1536, "llama.block_count": 2**31, "llama.vocab_size": 100},
            "gguf.bad-config",
        ),
        (
            {"general.architecture": "llama", "llama.attention.head_count": 0, "llama.embedding_length": 576,
             "llama.feed_forward_length": 1536, "llama.block_count": 2, "llama.vocab_size": 100},
            "gguf.bad-config",
        ),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_refused(metadata: dict[str, object], code: str) -> None:
    with pytest.raises(ModelFileError) as info:
        config_from_gguf(metadata, "model.gguf")
    assert info.value.code == code


@pytest.mark.parametrize("keep", [0.00001, 0.001, 0.01, 0.5, 0.999999])
def test_a_truncated_download_of_the_real_model_is_refused(tmp_path: Path, keep: float) -> None:
    from local_engine import default_model_path

    source = Path(default_model_path())
    size = int(source.stat().st_size * keep)
    with source.open("rb") as handle:
        path = _write(tmp_path, handle.read(size))
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        read_gguf(path)
    assert info.value.code in {"gguf.truncated", "gguf.bad-count"}  # a count the rest cannot hold
    assert time.perf_counter() - start < 2.0  # ~0.1 s alone; a shared 2-core machine needs slack
