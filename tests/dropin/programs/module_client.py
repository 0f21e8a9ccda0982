# The module-level client: settings as module attributes, resources straight off the module.
import os

import openai

openai.max_retries = 0
openai.default_headers = {"x-dropin": "module"}
completion = openai.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "module level"}], max_tokens=20
)
print(type(completion).__name__, completion.choices[0].message.content, completion.usage.total_tokens)
print([m.id for m in openai.models.list()])
vectors = openai.embeddings.create(model="text-embedding-3-small", input="module level")
print(type(vectors).__name__, len(vectors.data[0].embedding))

openai.api_key = "sk-changed-at-run-time"  # the next call uses it, as with the SDK
try:
    openai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])
    print("accepted")
except openai.AuthenticationError as exc:
    print("refused", exc.status_code)
openai.api_key = os.environ["OPENAI_API_KEY"]
with openai.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True
) as stream:
    print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
