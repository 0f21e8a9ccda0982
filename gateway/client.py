"""``OpenAI`` and ``AsyncOpenAI``: the openai SDK's client surface, in front of every model.

```python
from gateway import OpenAI                      # was: from openai import OpenAI

client = OpenAI()                               # reads OPENAI_API_KEY, ANTHROPIC_API_KEY, … like the SDKs
reply = client.chat.completions.create(model="anthropic/claude-3-5-haiku-latest", messages=[...])
print(reply.choices[0].message.content, reply.gateway)
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from gateway._constants import DEFAULT_CONNECTION_LIMITS, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from gateway.attempts import NullObserver, Observer
from gateway.execute import Executor
from gateway.execute_async import AsyncExecutor
from gateway.resilience.retry import RetrySettings
from gateway.resources import AsyncChat, AsyncEmbeddings, AsyncModels, Chat, Embeddings, Models
from gateway.routing import Planner
from gateway.targets import ClientConfig, client_config_from_env
from gateway.types import NOT_GIVEN, NotGiven

__all__ = ["AsyncOpenAI", "OpenAI"]


class _ClientBase:
    _config: ClientConfig
    timeout: float | httpx.Timeout | None
    max_retries: int
    _policy_source: Any

    def _setup(
        self,
        *,
        api_key: str | None,
        organization: str | None,
        project: str | None,
        base_url: str | httpx.URL | None,
        timeout: float | httpx.Timeout | None | NotGiven,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
        default_query: Mapping[str, object] | None,
        policy: Any,
        observer: Observer | None,
        runtime: Any = None,
    ) -> None:
        if max_retries is None or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        self._config = client_config_from_env(
            api_key=api_key,
            base_url=str(base_url) if base_url is not None else None,
            organization=organization,
            project=project,
            default_headers=default_headers,
            default_query=default_query,
        )
        self.timeout = DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else timeout
        self.max_retries = max_retries
        self._policy_source = policy
        self._observer: Observer = observer if observer is not None else NullObserver()
        self._planner = Planner(self._config)
        self._runtime: Any = None
        self._guard: Any = None
        self._owns_runtime = runtime is None
        if runtime is not None or policy is not None:
            self._use_policy(policy, observer, runtime)

    def _use_policy(self, policy: Any, observer: Observer | None, runtime: Any) -> None:
        """Route, meter and guard by the policy (see ``gateway/runtime.py``); a file is hot-reloaded."""
        if runtime is None:
            from gateway.runtime import build_runtime

            runtime = build_runtime(policy, observer)
        self._runtime = runtime
        self._guard = runtime.guard
        self._observer = runtime.observer
        self._planner = Planner(
            self._config, runtime.policy, stats=runtime.stats.snapshot, evals=runtime.evals
        )

    @property
    def meter(self) -> Any:
        """The policy's usage meter (``None`` without a policy)."""
        return self._runtime.meter if self._runtime is not None else None

    @property
    def api_key(self) -> str | None:
        return self._config.api_key

    @property
    def base_url(self) -> httpx.URL:
        return httpx.URL(self._config.base_url.rstrip("/") + "/")

    @property
    def organization(self) -> str | None:
        return self._config.organization

    @property
    def project(self) -> str | None:
        return self._config.project

    def _options(self, **overrides: Any) -> dict[str, Any]:
        config = self._config
        options: dict[str, Any] = {
            "api_key": config.api_key,
            "organization": config.organization,
            "project": config.project,
            "base_url": config.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": dict(config.default_headers),
            "default_query": dict(config.default_query),
            "policy": self._policy_source,
            "observer": self._observer,
            "_runtime": self._runtime,
        }
        unknown = set(overrides) - set(options) - {"http_client", "set_default_headers", "set_default_query"}
        if "policy" in overrides or "observer" in overrides:
            options["_runtime"] = None  # a new policy or observer: a runtime of its own
        if unknown:
            raise TypeError(f"with_options() got unexpected keyword arguments: {sorted(unknown)}")
        options["default_headers"] = {
            **options["default_headers"],
            **(overrides.pop("default_headers", None) or {}),
        }
        options["default_query"] = {
            **options["default_query"],
            **(overrides.pop("default_query", None) or {}),
        }
        if "set_default_headers" in overrides:
            options["default_headers"] = overrides.pop("set_default_headers")
        if "set_default_query" in overrides:
            options["default_query"] = overrides.pop("set_default_query")
        options.update(overrides)
        return options

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self._config.base_url!r} policy={_policy_name(self._policy_source)!r}>"


class OpenAI(_ClientBase):
    """The synchronous client. Arguments as the openai SDK's, plus ``policy=``.

    Args:
        api_key: key for the client's own endpoint; defaults to ``OPENAI_API_KEY``. Other providers
            read their own variables (``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``, …) or the policy.
        base_url: the client's own endpoint; defaults to ``OPENAI_BASE_URL`` or OpenAI's.
        timeout: seconds or an ``httpx.Timeout``; ``None`` means no timeout.
        max_retries: retries inside one candidate (fallback to other candidates is separate).
        http_client: an ``httpx.Client`` (or an object with its interface) to send requests with.
        policy: a policy file path (YAML, TOML or JSON) or a loaded ``Policy``.

    Example:
        >>> from gateway import OpenAI
        >>> client = OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
        >>> client.max_retries
        2
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | None | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        http_client: httpx.Client | None = None,
        policy: Any = None,
        observer: Observer | None = None,
        _strict_response_validation: bool = False,
        _runtime: Any = None,
    ) -> None:
        self._setup(
            api_key=api_key,
            organization=organization,
            project=project,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            default_query=default_query,
            policy=policy,
            observer=observer,
            runtime=_runtime,
        )
        self._owns_http = http_client is None
        self._http = http_client or _default_sync_http(self.timeout)
        self._executor = Executor(
            self._http,
            observer=self._observer,
            retry=RetrySettings(max_retries=max_retries),
            breakers=self._runtime.breakers if self._runtime is not None else None,
        )
        self.chat = Chat(self)
        self.embeddings = Embeddings(self)
        self.models = Models(self)

    def with_options(self, **overrides: Any) -> OpenAI:
        """A copy of this client with some options changed; it shares the connection pool."""
        options = self._options(**overrides)
        options.setdefault("http_client", self._http)
        return OpenAI(**options)

    copy = with_options

    def close(self) -> None:
        if self._owns_http:
            self._http.close()
        if self._runtime is not None and self._owns_runtime:
            self._runtime.close()

    def __enter__(self) -> OpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOpenAI(_ClientBase):
    """The asyncio client; the same arguments as ``OpenAI``, with an ``httpx.AsyncClient``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | None | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        http_client: httpx.AsyncClient | None = None,
        policy: Any = None,
        observer: Observer | None = None,
        _strict_response_validation: bool = False,
        _runtime: Any = None,
    ) -> None:
        self._setup(
            api_key=api_key,
            organization=organization,
            project=project,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers=default_headers,
            default_query=default_query,
            policy=policy,
            observer=observer,
            runtime=_runtime,
        )
        self._owns_http = http_client is None
        self._http = http_client or _default_async_http(self.timeout)
        self._executor = AsyncExecutor(
            self._http,
            observer=self._observer,
            retry=RetrySettings(max_retries=max_retries),
            breakers=self._runtime.breakers if self._runtime is not None else None,
        )
        self.chat = AsyncChat(self)
        self.embeddings = AsyncEmbeddings(self)
        self.models = AsyncModels(self)

    def with_options(self, **overrides: Any) -> AsyncOpenAI:
        options = self._options(**overrides)
        options.setdefault("http_client", self._http)
        return AsyncOpenAI(**options)

    copy = with_options

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
        if self._runtime is not None and self._owns_runtime:
            self._runtime.close()

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _proxy_configured() -> bool:
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return any(os.environ.get(name) for name in names)


def _default_sync_http(timeout: float | httpx.Timeout | None) -> httpx.Client:
    """httpx with the gateway's one-write socket transport, unless the environment sets a proxy."""
    if _proxy_configured():
        return httpx.Client(timeout=timeout, limits=DEFAULT_CONNECTION_LIMITS)
    from gateway._sync_transport import SocketTransport

    return httpx.Client(timeout=timeout, transport=SocketTransport())


def _default_async_http(timeout: float | httpx.Timeout | None) -> httpx.AsyncClient:
    """httpx with the gateway's linear-pool transport, unless the environment sets a proxy."""
    if _proxy_configured():
        return httpx.AsyncClient(timeout=timeout, limits=DEFAULT_CONNECTION_LIMITS)
    from gateway._aio_transport import AsyncioTransport

    return httpx.AsyncClient(timeout=timeout, transport=AsyncioTransport())


def _policy_name(policy: Any) -> str | None:
    if policy is None:
        return None
    return os.fspath(policy) if isinstance(policy, str | os.PathLike) else type(policy).__name__
