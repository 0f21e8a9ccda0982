import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")

with client.chat.completions.stream(
    model=model, messages=[{"role": "user", "content": "helpers stream this"}], stream_options={"include_usage": True}
) as stream:
    kinds = []
    for event in stream:
        kinds.append(event.type)
        if event.type == "content.done":
            print("content.done", event.content)
    final = stream.get_final_completion()
print(sorted(set(kinds)))
print(final.choices[0].message.content, final.choices[0].finish_reason, final.usage.total_tokens)

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
with client.chat.completions.stream(
    model=model, messages=[{"role": "user", "content": "What is the weather in Paris"}], tools=tools
) as stream:
    done = [(e.name, e.arguments) for e in stream if e.type == "tool_calls.function.arguments.done"]
    final = stream.get_final_completion()
call = final.choices[0].message.tool_calls[0]
print(done, final.choices[0].finish_reason, call.function.name, call.function.arguments)

with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "text only"}]) as stream:
    print(stream.get_final_completion().choices[0].message.content)
