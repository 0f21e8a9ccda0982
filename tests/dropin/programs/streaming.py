import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
stream = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "stream these five words please"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces = []
usage = None
finish = None
with stream:
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
print(len(pieces) > 1, "".join(pieces), finish)
print(usage.prompt_tokens, usage.completion_tokens)

# Stop early: close() ends the stream and frees the connection.
stream = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "a b c d e f g"}], stream=True
)
first = next(iter(stream))
stream.close()
print(type(first).__name__)
