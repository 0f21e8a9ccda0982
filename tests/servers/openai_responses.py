"""The Responses API (``POST /v1/responses``) as OpenAI serves it, for the loopback server.

Written from OpenAI's API reference, independently of the gateway's own Responses dialect (so the
tests compare two implementations, not one with itself): input items become the brain's messages,
its answer becomes a ``Response`` object, or the streaming event sequence with ``event:`` names
and ``sequence_number``s.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.servers import brain
from tests.servers.http import JSONReply, Reply, SSEReply


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body["input"] if isinstance(body["input"], list) else [{"role": "user", "content": body["input"]}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content)
            messages.append({"role": item["role"], "content": content})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages


def _format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("text") or {}).get("format")
    if not fmt or fmt.get("type") != "json_schema":
        return None
    return {"type": "json_schema", "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")}}


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    return [
        {"type": "function", "function": {"name": t["name"], "parameters": t.get("parameters") or {}}}
        for t in tools
    ] or None


def handle(body: dict[str, Any], request_id: str) -> Reply:
    ans = brain.answer(
        _messages(body),
        tools=_tools(body),
        response_format=_format(body),
        max_tokens=body.get("max_output_tokens"),
    )
    rid = "resp_" + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    usage = {
        "input_tokens": ans.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": ans.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": ans.prompt_tokens + ans.completion_tokens,
    }
    output: list[dict[str, Any]] = []
    if ans.text is not None:
        part = {"type": "output_text", "text": ans.text, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_{rid[5:]}",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        )
    for call in ans.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{call.id}",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
        )
    response = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature", 1.0),
        "top_p": body.get("top_p", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
    }
    headers = {"x-request-id": request_id}
    served = {"prompt": ans.prompt_tokens, "completion": ans.completion_tokens}
    if not body.get("stream"):
        return JSONReply(body=response, headers=headers, usage=served)
    return SSEReply(_events(response, ans), headers=headers, usage=served)


def _events(response: dict[str, Any], ans: brain.Answer) -> list[bytes]:
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    for index, item in enumerate(response["output"]):
        opened = {**item, "status": "in_progress"}
        if item["type"] == "message":
            opened["content"] = []
            events.append({"type": "response.output_item.added", "output_index": index, "item": opened})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
            for word in ans.words:
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "item_id": item["id"],
                        "output_index": index,
                        "content_index": 0,
                        "delta": word,
                        "logprobs": [],
                    }
                )
            text = item["content"][0]["text"]
            events.append(
                {
                    "type": "response.output_text.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            events.append(
                {
                    "type": "response.content_part.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "part": item["content"][0],
                }
            )
        else:
            opened["arguments"] = ""
            events.append({"type": "response.output_item.added", "output_index": index, "item": opened})
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "delta": item["arguments"],
                }
            )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item["id"],
                    "output_index": index,
                    "arguments": item["arguments"],
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": response})
    pieces = []
    for number, event in enumerate(events):
        event["sequence_number"] = number
        pieces.append(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    return pieces
