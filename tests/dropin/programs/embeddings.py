import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_EMBED_MODEL", "text-embedding-3-small")
result = client.embeddings.create(model=model, input=["switchyard", "breaker"], dimensions=8)
print(len(result.data), [len(item.embedding) for item in result.data], result.data[0].index)
print([round(x, 3) for x in result.data[1].embedding[:4]])
