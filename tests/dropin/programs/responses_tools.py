import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
tools = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]
first = client.responses.create(model=model, input="What is the weather in Paris", tools=tools)
calls = [item for item in first.output if item.type == "function_call"]
print(first.status, len(calls), [(c.name, json.loads(c.arguments), c.call_id.startswith("call")) for c in calls])
print(repr(first.output_text))

follow_up = [{"role": "user", "content": "What is the weather in Paris"}]
follow_up += [c.model_dump(exclude_none=True) for c in calls]
follow_up += [{"type": "function_call_output", "call_id": c.call_id, "output": "sunny and 21 C"} for c in calls]
second = client.responses.create(model=model, input=follow_up, tools=tools)
print(second.status, [item.type for item in second.output])
print(second.output_text)
