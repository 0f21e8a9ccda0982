"""The embedded model, in process: no key, no network, the prompt never leaves the machine.

python examples/local_model.py
"""

from __future__ import annotations

from gateway import OpenAI

client = OpenAI()  # no configuration needed for local models
question = [{"role": "user", "content": "What is the capital of France?"}]

reply = client.chat.completions.create(
    model="local/smollm2-135m-instruct", messages=question, temperature=0, max_tokens=32
)
print(reply.choices[0].message.content)
print(
    f"usage: {reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} completion tokens (exact)"
)

print("streamed: ", end="")
for chunk in client.chat.completions.create(
    model="local/smollm2-135m-instruct",
    messages=[{"role": "user", "content": "Name three colours."}],
    temperature=0,
    max_tokens=32,
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
