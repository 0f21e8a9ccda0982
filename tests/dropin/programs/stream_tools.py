import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
tools = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "convert", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}},
]
calls = {}
finish = None
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "use both tools on bread"}], tools=tools, stream=True
):
    for choice in chunk.choices:
        for delta in choice.delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            if delta.function and delta.function.name:
                entry["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
        finish = choice.finish_reason or finish
print(finish, [(i, c["name"], json.loads(c["arguments"])) for i, c in sorted(calls.items())])
