"""The rules of the house, checked: the public surface, the layering, and a light ``import gateway``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parents[1]


def test_all_lists_exactly_the_public_names() -> None:
    from gateway.sdk.module_client import SETTINGS

    public = {name for name in vars(gateway) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(gateway, name)).__name__ == "module"}
    # the module-level client's settings are state (``gateway.api_key = ...``): a star import would
    # copy them, so they are public but not exported, as in openai
    assert set(SETTINGS) <= public
    assert set(gateway.__all__) == public - modules - set(SETTINGS) | {"__version__"}
    assert gateway.__all__ == sorted(
        gateway.__all__, key=lambda n: (n.startswith("_"), n)
    ) or gateway.__all__ == sorted(gateway.__all__)


def test_openai_module_level_names_exist() -> None:
    for name in (
        "OpenAI",
        "AsyncOpenAI",
        "OpenAIError",
        "APIError",
        "APIStatusError",
        "APIConnectionError",
        "APITimeoutError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "RateLimitError",
        "InternalServerError",
        "NOT_GIVEN",
        "NotGiven",
        "pydantic_function_tool",
        "Stream",
        "AsyncStream",
        "Timeout",
        "DEFAULT_MAX_RETRIES",
    ):
        assert hasattr(gateway, name), name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_providers_import_only_types_errors_and_their_base() -> None:
    allowed_gateway = {"gateway.core.types", "gateway.core.errors"}
    banned = {"httpx", "httpx2", "openai", "redis", "torch"}
    for path in (ROOT / "providers").glob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in banned, f"{path.name} imports {name}"
            if top == "gateway":
                assert name in allowed_gateway, f"{path.name} imports {name}"
            if top == "local_engine":
                assert path.name == "local.py", (
                    f"only providers/local.py may reach local_engine ({path.name})"
                )


# The SDK is the front door's business: the core, the dialects and the transports speak the wire
# protocol, not the SDK (the ASGI server will reuse them). The internal error tree takes only its root.
SDK_ALLOWED = {"gateway/__init__.py", "gateway/errors.py", "gateway/core/errors.py", "gateway/evals/calls.py"}


def test_only_the_facades_import_the_openai_sdk() -> None:
    for path in (ROOT / "gateway").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("gateway/sdk/") or rel in SDK_ALLOWED:
            continue
        for name in _imports(path):
            assert name.split(".")[0] not in ("openai", "httpx", "httpx2"), f"{rel} imports {name}"


def test_the_clients_are_the_sdks() -> None:
    import openai

    pairs = [
        (gateway.OpenAI, openai.OpenAI),
        (gateway.AsyncOpenAI, openai.AsyncOpenAI),
        (gateway.AzureOpenAI, openai.AzureOpenAI),
        (gateway.AsyncAzureOpenAI, openai.AsyncAzureOpenAI),
    ]
    for ours, theirs in pairs:
        assert issubclass(ours, theirs)
    assert gateway.RateLimitError is openai.RateLimitError
    assert issubclass(gateway.BudgetExceededError, openai.RateLimitError)
    assert issubclass(gateway.PolicyError, openai.OpenAIError)
    assert gateway.types is openai.types and gateway.DefaultHttpxClient is openai.DefaultHttpxClient


def test_local_engine_imports_nothing_of_gateway() -> None:
    for path in (ROOT / "local_engine").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in ("gateway", "providers"), f"{path} imports {name}"


def test_import_gateway_stays_light() -> None:
    code = (
        "import sys, gateway; "
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'rich', 'numpy', 'tiktoken', 'redis', "
        "'opentelemetry.sdk', 'yaml', 'local_engine', 'providers.openai') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
