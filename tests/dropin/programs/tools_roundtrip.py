import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
messages = [{"role": "user", "content": "What is the weather in Paris"}]
first = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="auto")
call = first.choices[0].message.tool_calls[0]
print(first.choices[0].finish_reason, call.type, call.function.name, json.loads(call.function.arguments))
messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny and 21 C"})
second = client.chat.completions.create(model=model, messages=messages, tools=tools)
print(second.choices[0].finish_reason, second.choices[0].message.content)
