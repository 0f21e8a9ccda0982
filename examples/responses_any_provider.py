"""The Responses API on a model that has no Responses API: the bundled local engine, offline.

python examples/responses_any_provider.py

Switchyard translates ``client.responses`` through the chat schema for every provider that does not
speak it natively (Anthropic, Gemini, the local engine, most OpenAI-compatible hosts): text,
function tools, structured output, usage and the streaming event vocabulary.
"""

from __future__ import annotations

import gateway
from gateway import OpenAI

client = OpenAI()  # no key needed: the model runs in process
model = "local/smollm2-135m-instruct"

reply = client.responses.create(
    model=model,
    instructions="Answer in one short sentence.",
    input="What is the capital of France?",
    temperature=0,
    max_output_tokens=24,
)
print(reply.output_text)
print(
    f"usage: {reply.usage.input_tokens} in, {reply.usage.output_tokens} out; served by {gateway.info(reply).provider}"
)

last = None
for event in client.responses.create(
    model=model, input="Name three colours.", temperature=0, max_output_tokens=24, stream=True
):
    if event.type == "response.output_text.delta":
        print(event.delta, end="", flush=True)
    last = event
# max_output_tokens reached: the stream ends with response.incomplete, as OpenAI's does
print(f"\nstream ended with {last.type} ({last.response.status})")

try:
    client.responses.create(model=model, input="Hi", previous_response_id="resp_123")
except (
    gateway.BadRequestError
) as error:  # a stateful feature the local engine cannot honour: named, not ignored
    print("refused:", error.body["param"])
