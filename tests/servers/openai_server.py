"""A loopback server that speaks OpenAI's chat-completions, embeddings and models API.

Model names pick the behaviour:
- ``fixture:<name>`` replays ``shared/fixtures/openai*/<name>.response.{json,sse}`` with the
  recorded status and headers;
- ``error:<status>`` answers with OpenAI's real error object for that status (``retry-after`` on 429);
- anything else is answered by ``brain.answer`` (echo, tool calls, JSON schema).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tests.servers import brain
from tests.servers.http import JSONReply, Recorded, Reply, SSEReply, sse_pieces

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"

ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def handle(rec: Recorded) -> Reply:
    if rec.path.endswith("/models") and rec.method == "GET":
        return JSONReply(body={"object": "list", "data": [_model("gpt-4o-mini"), _model("gpt-4o")]})
    if "/models/" in rec.path and rec.method == "GET":
        name = rec.path.rsplit("/", 1)[1]
        if name in ("gpt-4o-mini", "gpt-4o"):
            return JSONReply(body=_model(name))
        return error_reply(404)
    body = rec.json() or {}
    model = str(body.get("model", ""))
    if model.startswith("fixture:"):
        return replay(model.removeprefix("fixture:"))
    if model.startswith("error:"):
        return error_reply(int(model.removeprefix("error:")))
    if rec.path.endswith("/embeddings"):
        return _embeddings(body)
    if rec.path.endswith("/responses"):
        from tests.servers import openai_responses

        return openai_responses.handle(body, _request_id(rec))
    if not rec.path.endswith("/chat/completions"):
        return error_reply(404)
    return chat(body, request_id=_request_id(rec))


def chat(body: dict[str, Any], *, request_id: str = "req_test") -> Reply:
    ans = brain.answer(
        body["messages"],
        tools=body.get("tools"),
        tool_choice=body.get("tool_choice"),
        response_format=body.get("response_format"),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        parallel_tool_calls=body.get("parallel_tool_calls"),
    )
    cid = "chatcmpl-" + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    usage = {
        "prompt_tokens": ans.prompt_tokens,
        "completion_tokens": ans.completion_tokens,
        "total_tokens": ans.prompt_tokens + ans.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    served = {"prompt": ans.prompt_tokens, "completion": ans.completion_tokens}
    headers = {"x-request-id": request_id, "openai-processing-ms": "1"}
    n = int(body.get("n") or 1)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return SSEReply(
            sse_pieces(stream_chunks(cid, body["model"], ans, n=n, include_usage=include_usage, usage=usage)),
            headers=headers,
            usage=served,
        )
    message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None, "annotations": []}
    if ans.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in ans.tool_calls
        ]
    choices = [
        {"index": i, "message": message, "logprobs": None, "finish_reason": ans.finish_reason}
        for i in range(n)
    ]
    reply = {
        "id": cid,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body["model"],
        "choices": choices,
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_loopback",
    }
    return JSONReply(body=reply, headers=headers, usage=served)


def stream_chunks(
    cid: str, model: str, ans: brain.Answer, *, n: int, include_usage: bool, usage: dict[str, Any]
) -> list[dict[str, Any]]:
    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_loopback",
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return payload

    out = []
    for i in range(n):
        out.append(
            chunk(i, {"role": "assistant", "content": "" if not ans.tool_calls else None, "refusal": None})
        )
        for word in ans.words:
            out.append(chunk(i, {"content": word}))
        for t, call in enumerate(ans.tool_calls):
            head = {
                "index": t,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(chunk(i, {"tool_calls": [head]}))
            half = len(call.arguments) // 2
            for piece in (call.arguments[:half], call.arguments[half:]):
                out.append(chunk(i, {"tool_calls": [{"index": t, "function": {"arguments": piece}}]}))
        out.append(chunk(i, {}, ans.finish_reason))
    if include_usage:
        out.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "system_fingerprint": "fp_loopback",
                "choices": [],
                "usage": usage,
            }
        )
    return out


def error_reply(status: int, *, retry_after: str | None = "1") -> JSONReply:
    kind, code = ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": f"Loopback error {status}.", "type": kind, "param": None, "code": code}}
    headers = {"x-request-id": f"req_error_{status}"}
    if status == 429 and retry_after is not None:
        headers["retry-after"] = retry_after
    raw = json.dumps(body, indent=4).encode() + b"\n"
    return JSONReply(status=status, raw=raw, headers=headers)


def replay(name: str) -> Reply:
    """Replay a recorded fixture with its recorded status and (safe) headers."""
    for folder in ("openai", "openai_compatible"):
        base = FIXTURES / folder / name
        meta_path = base.with_name(base.name + ".meta.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        status = int(_meta_status(meta))
        headers = {k: v for k, v in _meta_headers(meta).items() if k.lower() in _REPLAYED_HEADERS}
        sse = base.with_name(base.name + ".response.sse")
        if sse.exists():
            return SSEReply([sse.read_bytes()], status=status, headers=headers)
        js = base.with_name(base.name + ".response.json")
        if js.exists():
            return JSONReply(status=status, raw=js.read_bytes(), headers=headers)
    raise FileNotFoundError(f"no fixture named {name!r}")


_REPLAYED_HEADERS = {
    "x-request-id",
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "openai-processing-ms",
}


def _meta_status(meta: dict[str, Any]) -> int:
    for key in ("status", "status_code"):
        if key in meta:
            return int(meta[key])
    response = meta.get("response", {})
    return int(response.get("status", 200)) if isinstance(response, dict) else 200


def _meta_headers(meta: dict[str, Any]) -> dict[str, str]:
    for holder in (meta, meta.get("response", {})):
        if isinstance(holder, dict):
            headers = holder.get("headers") or holder.get("response_headers")
            if isinstance(headers, dict):
                return {str(k): str(v[0] if isinstance(v, list) else v) for k, v in headers.items()}
    return {}


def _embeddings(body: dict[str, Any]) -> Reply:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dims = int(body.get("dimensions") or 8)
    data = [
        {"object": "embedding", "index": i, "embedding": brain.embedding(str(text), dims)}
        for i, text in enumerate(inputs)
    ]
    tokens = sum(brain.count_tokens(str(t)) for t in inputs)
    return JSONReply(
        body={
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        usage={"prompt": tokens},
    )


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_686_935_002, "owned_by": "openai"}


def _request_id(rec: Recorded) -> str:
    return "req_" + hashlib.sha1(f"{rec.started}{time.monotonic_ns()}".encode()).hexdigest()[:16]
