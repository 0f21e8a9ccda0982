"""``OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI``, ``AsyncAzureOpenAI``: the openai SDK's clients, routed.

Each is a subclass of the SDK's class of the same name: it takes every argument the SDK's takes,
plus ``policy=`` (a policy file path or a loaded ``Policy``) and ``observer=`` (hears of every
attempt). It mounts Switchyard's transport in the SDK's HTTP client (``gateway/sdk/transport.py``)
and marks its own requests with its core, so that routed endpoints are served by Switchyard and
every other endpoint goes to the client's base URL unchanged. ``with_options()``/``copy()`` keep
the policy and share its runtime (state, meter, breakers).

Without ``OPENAI_API_KEY`` or ``api_key=``, the client still works for other providers and for a
policy's routes; a bare model name (the client's own endpoint) then answers 401 saying so.
"""

from __future__ import annotations

import os
from typing import Any

import openai

from gateway._redact import register_secret
from gateway.core.attempts import NullObserver
from gateway.core.plan import Planner
from gateway.core.service import NO_KEY, AsyncCore, Core
from gateway.errors import sdk_class_for, status_error
from gateway.sdk.info import remember_reply
from gateway.sdk.transport import CORE_EXTENSION, mount
from gateway.targets import ClientConfig
from gateway.transports.http import http_module

__all__ = ["AsyncAzureOpenAI", "AsyncOpenAI", "AzureOpenAI", "OpenAI"]


class Switchyard:
    """One facade's Switchyard state: its runtime (policy, state, meter) and its core."""

    def __init__(
        self, policy: Any, observer: Any, runtime: Any, owns_runtime: bool, core: Core | AsyncCore
    ) -> None:
        self.policy = policy
        self.observer = observer
        self.runtime = runtime
        self.owns_runtime = owns_runtime
        self.core = core

    def close(self) -> None:
        if self.runtime is not None and self.owns_runtime:
            self.runtime.close()
            self.owns_runtime = False


def _key_kwargs(kwargs: dict[str, Any], env_var: str = "OPENAI_API_KEY") -> dict[str, Any]:
    if kwargs.get("api_key") is None and not os.environ.get(env_var):
        kwargs["api_key"] = NO_KEY
    return kwargs


def _build(
    client: Any, policy: Any, observer: Any, parent: Switchyard | None, *, asynchronous: bool
) -> Switchyard:
    runtime, owns = None, False
    if parent is not None and policy is None and observer is None:
        policy, observer, runtime = parent.policy, parent.observer, parent.runtime
    elif parent is not None:
        policy = policy if policy is not None else parent.policy
        observer = observer if observer is not None else parent.observer
    if runtime is None and policy is not None:
        from gateway.runtime import build_runtime

        runtime, owns = build_runtime(policy, observer), True
    key = getattr(client, "api_key", None)
    if isinstance(key, str) and key != NO_KEY:
        register_secret(key)  # so that an upstream echoing it back never shows it
    http = client._client
    module = http_module(http)
    mount(http, module, asynchronous=asynchronous)
    from gateway.resilience.retry import RetrySettings

    obs = runtime.observer if runtime is not None else (observer or NullObserver())
    breakers = runtime.breakers if runtime is not None else None
    retry = RetrySettings(max_retries=client.max_retries)
    if runtime is not None:
        planner = Planner(ClientConfig(), runtime.policy, stats=runtime.stats.snapshot, evals=runtime.evals)
    else:
        planner = Planner(ClientConfig())
    core: Core | AsyncCore
    if asynchronous:
        from gateway.core.execute_async import AsyncExecutor

        core = AsyncCore(planner, AsyncExecutor(http, observer=obs, retry=retry, breakers=breakers), runtime)
    else:
        from gateway.core.execute import Executor

        core = Core(planner, Executor(http, observer=obs, retry=retry, breakers=breakers), runtime)
    return Switchyard(policy, observer, runtime, owns, core)


def _copy_kwargs(state: Switchyard, kwargs: dict[str, Any], policy: Any, observer: Any) -> dict[str, Any]:
    extra = dict(kwargs.pop("_extra_kwargs", None) or {})
    extra["_switchyard_parent"] = state
    if policy is not None:
        extra["policy"] = policy
    if observer is not None:
        extra["observer"] = observer
    kwargs["_extra_kwargs"] = extra
    return kwargs


def _make_status_error(err_msg: str, *, body: object, response: Any) -> openai.APIStatusError:
    return status_error(sdk_class_for(response.status_code), err_msg, body=body, response=response)


class _Facade:
    """What every facade adds to its SDK class; the blocking and asyncio mixins add the awaited hooks.

    ``_asynchronous`` picks the core and the transport; ``_fills_missing_key`` lets a client without
    ``OPENAI_API_KEY`` still serve other providers (Azure reads its own key variables).
    """

    _switchyard: Switchyard
    _asynchronous = False
    _fills_missing_key = True

    def __init__(
        self,
        *,
        policy: Any = None,
        observer: Any = None,
        _switchyard_parent: Switchyard | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**(_key_kwargs(kwargs) if self._fills_missing_key else kwargs))  # type: ignore[call-arg]
        self._switchyard = _build(self, policy, observer, _switchyard_parent, asynchronous=self._asynchronous)

    def copy(self, *, policy: Any = None, observer: Any = None, **kwargs: Any) -> Any:
        """A copy with some options changed; it keeps the policy and its runtime unless given new ones."""
        return super().copy(**_copy_kwargs(self._switchyard, kwargs, policy, observer))  # type: ignore[misc]

    with_options = copy

    def _make_status_error(self, err_msg: str, *, body: object, response: Any) -> openai.APIStatusError:
        return _make_status_error(err_msg, body=body, response=response)

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        result = super()._process_response_data(data=data, cast_to=cast_to, response=response)  # type: ignore[misc]
        remember_reply(result, response)
        return result

    @property
    def meter(self) -> Any:
        """The policy's usage meter (``None`` without a policy)."""
        runtime = self._switchyard.runtime
        return runtime.meter if runtime is not None else None

    @property
    def policy(self) -> Any:
        """The current policy (a watched file's latest good version), or ``None``."""
        return self._switchyard.core.planner.policy


class _SyncFacade(_Facade):
    """The blocking facades' hooks."""

    def _prepare_request(self, request: Any) -> None:
        super()._prepare_request(request)  # type: ignore[misc]
        request.extensions[CORE_EXTENSION] = self._switchyard.core

    def _process_response(self, **kwargs: Any) -> Any:
        result = super()._process_response(**kwargs)  # type: ignore[misc]
        remember_reply(result, kwargs["response"])
        return result

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        state = getattr(self, "_switchyard", None)
        if state is not None:
            state.close()


class _AsyncFacade(_Facade):
    """The asyncio facades' hooks (awaited where the SDK awaits them)."""

    _asynchronous = True

    async def _prepare_request(self, request: Any) -> None:
        await super()._prepare_request(request)  # type: ignore[misc]
        request.extensions[CORE_EXTENSION] = self._switchyard.core

    async def _process_response(self, **kwargs: Any) -> Any:
        result = await super()._process_response(**kwargs)  # type: ignore[misc]
        remember_reply(result, kwargs["response"])
        return result

    async def close(self) -> None:
        await super().close()  # type: ignore[misc]
        state = getattr(self, "_switchyard", None)
        if state is not None:
            aclose = getattr(getattr(state.runtime, "backend", None), "aclose", None)
            if aclose is not None:  # this loop's redis.asyncio connections (gateway/state/aio.py)
                await aclose()
            state.close()


class OpenAI(_SyncFacade, openai.OpenAI):
    """``openai.OpenAI``, routed by Switchyard. Every argument of the SDK's, plus:

    Args:
        policy: A policy file (YAML, TOML or JSON; watched and hot-reloaded) or a loaded ``Policy``.
        observer: Hears of every attempt (``attempt_finished(record)``), beside the policy's meter.

    ``copy()`` / ``with_options()`` keep the policy and its runtime unless given new ones.

    Example:
        >>> from gateway import OpenAI
        >>> client = OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
        >>> isinstance(client, __import__("openai").OpenAI), client.max_retries
        (True, 2)
    """


class AsyncOpenAI(_AsyncFacade, openai.AsyncOpenAI):
    """``openai.AsyncOpenAI``, routed by Switchyard (the same extra arguments as ``OpenAI``)."""


class AzureOpenAI(_SyncFacade, openai.AzureOpenAI):
    """``openai.AzureOpenAI``, routed by Switchyard: a deployment name is the client's own endpoint."""

    _fills_missing_key = False


class AsyncAzureOpenAI(_AsyncFacade, openai.AsyncAzureOpenAI):
    """``openai.AsyncAzureOpenAI``, routed by Switchyard."""

    _fills_missing_key = False
