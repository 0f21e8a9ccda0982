"""Hostile and broken files: each is one located PolicyError, fast, in bounded memory, no secret echoed."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from gateway.core.errors import PolicyError
from gateway.policy import MAX_POLICY_BYTES, load_policy, parse_policy
from tests.policy.conftest import ENV, errors_of, where

BILLION_LAUGHS = """\
version: 1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.fixture
def bounded() -> Iterator[Callable[[], tuple[float, int]]]:
    """Measure the test body: (seconds, peak bytes allocated)."""
    tracemalloc.start()
    start = time.perf_counter()
    yield lambda: (time.perf_counter() - start, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()


def _only(errors: list[PolicyError]) -> PolicyError:
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def test_alias_bomb_stops_early() -> None:
    start = time.perf_counter()
    error = _only(errors_of(BILLION_LAUGHS))
    assert error.code == "policy.alias-limit" and error.line is not None
    assert time.perf_counter() - start < 5  # about 0.3 s: it stops after MAX_NODES values


def test_alias_bomb_memory_is_bounded(bounded) -> None:
    errors_of(BILLION_LAUGHS)
    assert bounded()[1] < 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "line", "column", "tag"),
    [
        (
            "version: 1\nx: !!python/object/apply:os.system ['echo pwned']\n",
            2,
            4,
            "!!python/object/apply:os.system",
        ),
        (
            "version: 1\nx: !!python/object:collections.OrderedDict {}\n",
            2,
            4,
            "!!python/object:collections.OrderedDict",
        ),
        ("version: 1\nx: !!python/name:os.system ''\n", 2, 4, "!!python/name:os.system"),
        ("version: 1\nx: !custom 3\n", 2, 4, "!custom"),
        ("version: 1\nx: !!binary aGk=\n", 2, 4, "!!binary"),
        ("version: 1\nx: !!set {a, b}\n", 2, 4, "!!set"),
        ("version: 1\nx: !!timestamp 2020-01-01\n", 2, 4, "!!timestamp"),
    ],
)
def test_tags_outside_the_core_set_are_refused(text: str, line: int, column: int, tag: str) -> None:
    errors = errors_of(text)
    assert where(errors)[0] == (line, column, "x", "policy.unsafe-tag")
    assert f"tag {tag!r} is not allowed" in errors[0].message


def test_python_tags_never_run_code(tmp_path) -> None:
    marker = tmp_path / "ran"
    text = f"version: 1\nx: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]\n"
    errors_of(text)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\na: &a [*a]\n",
        "version: 1\na: &a {b: *a}\n",
        "&a {version: 1, x: *a}\n",
        "version: 1\na: &a {<<: *a}\n",
    ],
)
def test_recursive_aliases_are_refused(text: str) -> None:
    assert _only(errors_of(text)).code == "policy.alias-cycle"


def test_duplicate_keys_are_located_at_the_second() -> None:
    errors = errors_of("version: 1\nroutes:\n  r: {candidates: [gpt-4o]}\n  r: {candidates: [gpt-4.1]}\n")
    assert where(errors) == [(4, 3, "routes.r", "policy.duplicate-key")]
    assert "first defined at line 3, column 3" in errors[0].message


def test_duplicate_keys_in_json_and_toml() -> None:
    error = _only(errors_of('{"version": 1,\n "version": 1}', filename="p.json"))
    assert "invalid JSON: duplicate key 'version'" in error.message
    assert (error.line, error.column) == (2, 2)
    error = _only(errors_of("version = 1\nversion = 1\n", filename="p.toml"))
    assert (error.line, error.code) == (2, "policy.syntax")


def test_a_ten_megabyte_file_is_refused_before_reading(tmp_path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"version: 1\n" + b"#" * (10 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError) as info:
            load_policy(path, env=ENV)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "policy.too-large" and str(MAX_POLICY_BYTES) in info.value.message
    assert peak < 1024 * 1024


def test_json_constants_are_refused() -> None:
    error = _only(errors_of('{"version": NaN}', filename="p.json"))
    assert (error.code, "NaN is not a JSON number" in error.message) == ("policy.syntax", True)
    assert (error.line, error.column) == (1, 13)


def test_a_ten_megabyte_text_is_refused() -> None:
    assert _only(errors_of("version: 1\n" + "#" * (10 * 1024 * 1024))).code == "policy.too-large"


@pytest.mark.parametrize(
    ("text", "filename"),
    [
        ("x: " + "[" * 10_000 + "]" * 10_000, "p.yaml"),
        ("x: " + "{a: " * 10_000 + "1" + "}" * 10_000, "p.yaml"),
        ('{"x": ' + "[" * 10_000 + "]" * 10_000 + "}", "p.json"),
        ("x = " + "[" * 10_000 + "]" * 10_000, "p.toml"),
        ("".join("  " * i + f"k{i}:\n" for i in range(200)), "p.yaml"),
    ],
)
def test_deep_nesting_is_an_error_not_a_recursion_error(text: str, filename: str) -> None:
    start = time.perf_counter()
    error = _only(errors_of(text, filename=filename))
    assert error.code in ("policy.too-deep", "policy.syntax")
    assert time.perf_counter() - start < 5  # the worst, 10,000 flow brackets, takes about 0.5 s


def test_yaml_deep_nesting_is_located() -> None:
    error = _only(errors_of("x: " + "[" * 100 + "]" * 100))
    assert where([error]) == [(1, 67, None, "policy.too-deep")]


def test_a_byte_order_mark_is_ignored() -> None:
    text = "\ufeffversion: 1\nroutes:\n  r: {candidates: [gpt-4o]}\n"
    assert parse_policy(text, filename="p.yaml", env=ENV).routes["r"].candidates == ["gpt-4o"]
    assert parse_policy(text.encode("utf-8"), filename="p.yaml", env=ENV).version == 1
    assert where(errors_of("\ufeffversion: 1\nroutez: {}\n")) == [(2, 1, "routez", "policy.unknown-field")]


def test_crlf_line_endings_load_and_locate() -> None:
    text = "version: 1\r\nroutes:\r\n  r:\r\n    candidates: [gpt-4o]\r\n"
    assert parse_policy(text, filename="p.yaml", env=ENV).routes["r"].candidates == ["gpt-4o"]
    assert where(errors_of(text + "    max_latency_ms: -1\r\n")) == [
        (5, 21, "routes.r.max_latency_ms", "policy.greater-than")
    ]
    toml = 'version = 1\r\n[routes.r]\r\ncandidates = ["gpt-4o"]\r\nmax_latency_ms = 0\r\n'
    assert where(errors_of(toml, filename="p.toml")) == [
        (4, 18, "routes.r.max_latency_ms", "policy.greater-than")
    ]


def test_unknown_env_var_is_located_and_no_secret_is_echoed() -> None:
    text = "version: 1\nstate:\n  backend: redis\n  url: ${REDIS_URL}\n  pasword: ${REDIS_PASSWORD}\n"
    errors = errors_of(text)
    assert where(errors) == [
        (5, 3, "state.pasword", "policy.unknown-field"),
        (5, 12, "state.pasword", "policy.missing-env"),
    ]
    assert all("hunter2" not in str(error) and "hunter2" not in repr(error) for error in errors)


@pytest.mark.parametrize("filename", ["p.yaml", "p.json", "p.toml"])
def test_lone_surrogates_are_a_policy_error(filename: str) -> None:
    try:
        parse_policy('{"version": 1, "telemetry": {"service_name": "\udc80"}}', filename=filename, env=ENV)
    except PolicyError as exc:
        assert exc.errors


def test_invalid_utf8_is_located() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(b"version: 1\nx: caf\xe9\n", filename="p.yaml", env=ENV)
    assert where(info.value.errors) == [(2, 7, None, "policy.encoding")]


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\n\tx: 1\n",
        "---\nversion: 1\n---\nversion: 1\n",
        "version: 1\nx: \x00\n",
        "version: 1\nx: 'unterminated\n",
        "version: 1\n? [a, b]\n: 1\n",
        "version: 1\nx: *undefined\n",
        "version: 1\n<<: 3\n",
        "{{{{",
        "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    max_cost_usd: .inf\n",
        "version: 1\nmodels:\n  m: {provider: openai, context_window: 1e999}\n",
        "version: !!int abc\n",
        "version: !!float abc\n",
        "version: !!int 0x\n",
    ],
)
def test_malformed_yaml_is_a_policy_error(text: str) -> None:
    errors = errors_of(text)
    assert errors and all(isinstance(error, PolicyError) for error in errors)


def test_thousands_of_unknown_names_stay_fast() -> None:
    start = time.perf_counter()
    names = ", ".join(f"nomodel-{i}" for i in range(20_000))
    with pytest.raises(PolicyError) as info:
        parse_policy(f"version: 1\nroutes:\n  r:\n    candidates: [{names}]\n", filename="p.yaml", env=ENV)
    assert len(info.value.errors) == 51 and info.value.errors[-1].code == "policy.too-many-errors"
    assert time.perf_counter() - start < 10  # about 1.3 s: the pure-Python YAML parser dominates
