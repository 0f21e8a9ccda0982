"""A loopback server that speaks the Gemini API (``/v1beta/models/{model}:{method}``).

``generateContent``, ``streamGenerateContent`` (``alt=sse`` events; a streamed JSON array without
it, as the real API does), ``embedContent`` and ``batchEmbedContents``. It decodes the Gemini
request into OpenAI-shaped messages and asks ``brain.answer``, then encodes the answer as Gemini
would (candidates, ``finishReason``, cumulative ``usageMetadata`` on every streamed piece). Like the
real API it refuses a missing ``x-goog-api-key`` (400 ``API_KEY_INVALID``), a function-response turn
whose count differs from the function-call turn before it, and, for ``gemini-3*`` models, a
function call sent back without the ``thoughtSignature`` it was issued with.

Model names (in the URL path) pick the behaviour:
- ``fixture:<name>`` replays ``shared/fixtures/gemini/<name>.*`` (or ``tests/fixtures/gemini/``):
  ``.response.json`` with the recorded status; ``.response.sse`` byte for byte; a recorded JSON-array
  stream (``.response.jsonarray``) or vercel ``.chunks.jsonl`` re-framed as ``alt=sse`` events;
- ``error:<status>`` answers with Google's error body for that status (``RetryInfo`` on 429).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.servers import brain
from tests.servers.http import JSONReply, Recorded, Reply, SSEReply

SHARED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "gemini"
OWN = Path(__file__).resolve().parents[1] / "fixtures" / "gemini"

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS"}


def handle(rec: Recorded) -> Reply:
    prefix = "/v1beta/models/"
    if not rec.path.startswith(prefix) or ":" not in rec.path:
        return error_reply(404, f"Not found: {rec.path}")
    model, _, method = rec.path.removeprefix(prefix).rpartition(":")
    if not rec.headers.get("x-goog-api-key"):
        return _api_key_invalid()
    body = camel_keys(rec.json() or {})
    if model.startswith("fixture:"):
        return replay(model.removeprefix("fixture:"), sse=rec.query.get("alt") == ["sse"])
    if model.startswith("error:"):
        return error_reply(int(model.removeprefix("error:")))
    match method:
        case "embedContent":
            return JSONReply(body={"embedding": _embed(body)})
        case "batchEmbedContents":
            return JSONReply(body={"embeddings": [_embed(r) for r in body["requests"]]})
        case "generateContent" | "streamGenerateContent":
            try:
                messages = to_openai_messages(body, model)
            except ValueError as exc:
                return error_reply(400, str(exc))
            return answer(
                body, messages, model, method == "streamGenerateContent", rec.query.get("alt") == ["sse"]
            )
        case _:
            return error_reply(404, f"Method {method!r} not found")


# --- Gemini request -> OpenAI messages -----------------------------------------------------------

# The API takes proto field names in either spelling; the server reads camelCase.
_CAMEL = {
    "function_call": "functionCall",
    "function_response": "functionResponse",
    "function_declarations": "functionDeclarations",
    "inline_data": "inlineData",
    "file_data": "fileData",
    "mime_type": "mimeType",
    "file_uri": "fileUri",
    "system_instruction": "systemInstruction",
    "generation_config": "generationConfig",
    "tool_config": "toolConfig",
    "function_calling_config": "functionCallingConfig",
    "allowed_function_names": "allowedFunctionNames",
    "response_mime_type": "responseMimeType",
    "response_schema": "responseSchema",
    "max_output_tokens": "maxOutputTokens",
    "stop_sequences": "stopSequences",
    "candidate_count": "candidateCount",
    "thought_signature": "thoughtSignature",
}


def camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_CAMEL.get(k, k): camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def to_openai_messages(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if system:
        messages.append({"role": "system", "content": "\n".join(p["text"] for p in system["parts"])})
    pending: list[tuple[str, str]] = []  # (id, name) of the last model turn's function calls
    for turn in body["contents"]:
        if turn.get("role") == "model":
            message, pending = _model_turn(turn["parts"], model)
            messages.append(message)
        else:
            messages.extend(_user_turn(turn["parts"], pending))
            pending = []
    return messages


def _model_turn(parts: list[dict[str, Any]], model: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    text = "".join(p.get("text", "") for p in parts if "text" in p)
    calls = []
    for k, part in enumerate(p for p in parts if "functionCall" in p):
        call = part["functionCall"]
        if (
            model.startswith("gemini-3")
            and k == 0
            and part.get("thoughtSignature") != _signature(call["name"])
        ):
            raise ValueError(
                "Function call is missing a thought_signature in functionCall parts. This is required for "
                "tools to work correctly, and missing thought_signature may lead to degraded model performance."
            )
        call_id = f"fc_{k}_{call['name']}"
        calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call.get("args", {}))},
            }
        )
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message, [(c["id"], c["function"]["name"]) for c in calls]


def _user_turn(parts: list[dict[str, Any]], pending: list[tuple[str, str]]) -> list[dict[str, Any]]:
    responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
    if pending and len(responses) != len(pending):
        raise ValueError(
            "Please ensure that the number of function response parts is equal to the number of "
            "function call parts of the function call turn."
        )
    out: list[dict[str, Any]] = []
    for (call_id, name), response in zip(pending, responses, strict=False):
        if response["name"] != name:
            raise ValueError(f"functionResponse name {response['name']!r} does not match the call {name!r}")
        result = response["response"]
        content = (
            result["result"]
            if set(result) == {"result"} and isinstance(result["result"], str)
            else json.dumps(result)
        )
        out.append({"role": "tool", "tool_call_id": call_id, "content": content})
    content: list[dict[str, Any]] = []
    for part in parts:
        if "text" in part:
            content.append({"type": "text", "text": part["text"]})
        elif "inlineData" in part:
            data = part["inlineData"]
            content.append(
                {"type": "image_url", "image_url": {"url": f"data:{data['mimeType']};base64,{data['data']}"}}
            )
        elif "fileData" in part:
            content.append({"type": "image_url", "image_url": {"url": part["fileData"]["fileUri"]}})
    if content:
        out.append({"role": "user", "content": content})
    return out


def _lower_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, Any]:
    tools = body.get("tools")
    if not tools:
        return None, None
    tools = tools if isinstance(tools, list) else [tools]
    declarations = [d for tool in tools for d in tool.get("functionDeclarations", [])]
    openai_tools = [
        {
            "type": "function",
            "function": {
                "name": d["name"],
                "parameters": _lower_types(d.get("parameters", {"type": "object"})),
            },
        }
        for d in declarations
    ]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {"mode": "AUTO"}
    choice: Any = {"AUTO": "auto", "NONE": "none", "ANY": "required"}[config["mode"]]
    allowed = config.get("allowedFunctionNames")
    if allowed and len(allowed) == 1:
        choice = {"type": "function", "function": {"name": allowed[0]}}
        openai_tools = [t for t in openai_tools if t["function"]["name"] == allowed[0]]
    return openai_tools, choice


def _response_format(config: dict[str, Any]) -> dict[str, Any] | None:
    if config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseSchema", config.get("responseJsonSchema"))
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": _lower_types(schema)}}


# --- answer -> Gemini response -------------------------------------------------------------------


def _signature(name: str) -> str:
    return "sig_" + hashlib.sha1(name.encode()).hexdigest()[:16] + "+/="


def answer(
    body: dict[str, Any], messages: list[dict[str, Any]], model: str, stream: bool, sse: bool
) -> Reply:
    config = body.get("generationConfig") or {}
    tools, choice = _tools(body)
    ans = brain.answer(
        messages,
        tools=tools,
        tool_choice=choice,
        response_format=_response_format(config),
        max_tokens=config.get("maxOutputTokens"),
    )
    for sequence in config.get("stopSequences") or []:
        if ans.text and sequence in ans.text:
            ans.text = ans.text[: ans.text.index(sequence)]
    rid = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:22]
    n = int(config.get("candidateCount") or 1)
    usage = {
        "promptTokenCount": ans.prompt_tokens,
        "candidatesTokenCount": ans.completion_tokens * n,
        "totalTokenCount": ans.prompt_tokens + ans.completion_tokens * n,
    }
    served = {"prompt": ans.prompt_tokens, "completion": ans.completion_tokens * n}
    if not stream:
        candidates = [
            _candidate(i, _parts(ans, model, ans.text), FINISH[ans.finish_reason]) for i in range(n)
        ]
        return JSONReply(body=_response(candidates, usage, model, rid), usage=served)
    pieces = _stream_pieces(ans, model, rid, n, usage)
    if not sse:
        array = b"[" + b"\n,\r\n".join(json.dumps(p, indent=2).encode() for p in pieces) + b"]"
        return SSEReply([array], content_type="application/json; charset=UTF-8", usage=served)
    return SSEReply([b"data: " + json.dumps(p).encode() + b"\r\n\r\n" for p in pieces], usage=served)


def _parts(ans: brain.Answer, model: str, text: str | None) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": text}] if text else []
    for k, call in enumerate(ans.tool_calls):
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": json.loads(call.arguments)}}
        if model.startswith("gemini-3") and k == 0:
            part["thoughtSignature"] = _signature(call.name)
        parts.append(part)
    return parts


def _candidate(index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
    if finish is not None:
        candidate["finishReason"] = finish
    return candidate


def _response(
    candidates: list[dict[str, Any]], usage: dict[str, Any], model: str, rid: str
) -> dict[str, Any]:
    return {"candidates": candidates, "usageMetadata": usage, "modelVersion": model, "responseId": rid}


def _stream_pieces(
    ans: brain.Answer, model: str, rid: str, n: int, usage: dict[str, Any]
) -> list[dict[str, Any]]:
    words = ans.words
    pieces = []
    for w, word in enumerate(words):
        last = w == len(words) - 1 and not ans.tool_calls
        so_far = {
            **usage,
            "candidatesTokenCount": (w + 1) * n,
            "totalTokenCount": usage["promptTokenCount"] + (w + 1) * n,
        }
        candidates = [
            _candidate(i, [{"text": word}], FINISH[ans.finish_reason] if last else None) for i in range(n)
        ]
        pieces.append(_response(candidates, usage if last else so_far, model, rid))
    if ans.tool_calls or not words:
        candidates = [_candidate(i, _parts(ans, model, None), FINISH[ans.finish_reason]) for i in range(n)]
        pieces.append(_response(candidates, usage, model, rid))
    return pieces


def _embed(request: dict[str, Any]) -> dict[str, Any]:
    text = " ".join(p.get("text", "") for p in request["content"]["parts"])
    return {"values": brain.embedding(text, int(request.get("outputDimensionality") or 8))}


# --- errors and replays --------------------------------------------------------------------------


def error_reply(status: int, message: str | None = None) -> JSONReply:
    error: dict[str, Any] = {
        "code": status,
        "message": message or f"Loopback error {status}.",
        "status": STATUSES.get(status, "UNKNOWN"),
    }
    if status == 429:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
    raw = json.dumps({"error": error}, indent=2).encode() + b"\n"
    return JSONReply(status=status, raw=raw, headers={"content-type": "application/json; charset=UTF-8"})


def _api_key_invalid() -> JSONReply:
    return JSONReply(status=400, raw=(SHARED / "error_400_api_key_invalid.response.json").read_bytes())


def replay(name: str, *, sse: bool) -> Reply:
    for folder in (SHARED, OWN):
        path = folder / name
        status = _status(folder, name)
        if (raw := path.with_name(f"{name}.response.sse")).exists():
            return SSEReply([raw.read_bytes()], status=status)
        if (raw := path.with_name(f"{name}.response.jsonarray")).exists():
            items = json.loads(raw.read_text())
            if not sse:
                return SSEReply(
                    [raw.read_bytes()], status=status, content_type="application/json; charset=UTF-8"
                )
            return SSEReply([b"data: " + json.dumps(i).encode() + b"\r\n\r\n" for i in items], status=status)
        if (raw := path.with_name(f"{name}.chunks.jsonl")).exists():
            lines = [line for line in raw.read_bytes().splitlines() if line.strip()]
            return SSEReply([b"data: " + line + b"\r\n\r\n" for line in lines], status=status)
        if (raw := path.with_name(f"{name}.response.json")).exists():
            return JSONReply(status=status, raw=raw.read_bytes())
    raise FileNotFoundError(f"no Gemini fixture named {name!r}")


def _status(folder: Path, name: str) -> int:
    meta = folder / f"{name}.meta.json"
    if meta.exists():
        response = json.loads(meta.read_text()).get("response") or {}
        if isinstance(response, dict) and "status" in response:
            return int(response["status"])
    if name.startswith(("error_", "batch_embed_error_")):
        return int(name.removeprefix("batch_embed_").split("_")[1])
    return 200
