import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
response = client.responses.create(model=model, input="say hello to the switchyard")
print(type(response).__name__, response.object, response.status, response.model)
print(response.id, response.created_at)
print(response.output_text)
print([(item.type, item.role, [part.type for part in item.content]) for item in response.output])
print(response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens)

with_instructions = client.responses.create(
    model=model,
    instructions="You are terse.",
    input=[{"role": "user", "content": [{"type": "input_text", "text": "two parts"}]}],
    max_output_tokens=50,
    metadata={"team": "search"},
)
print(with_instructions.output_text, with_instructions.instructions, with_instructions.metadata)
