import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")

with client.responses.stream(model=model, input="stream a few words for me") as stream:
    kinds = []
    deltas = []
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = stream.get_final_response()
print(kinds)
print(deltas)
print(final.status, final.output_text, final.usage.total_tokens)

raw = client.responses.create(model=model, input="plain stream=True", stream=True)
numbers = []
text = ""
for event in raw:
    numbers.append(event.sequence_number)
    if event.type == "response.output_text.delta":
        text += event.delta
    if event.type == "response.completed":
        print("completed", event.response.output_text == text)
print(numbers == list(range(len(numbers))), text)

tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]
with client.responses.stream(model=model, input="look up bread", tools=tools) as stream:
    arguments = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
    final = stream.get_final_response()
print(arguments, [(item.type, item.name) for item in final.output])
