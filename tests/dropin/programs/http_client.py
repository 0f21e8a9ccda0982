import importlib.metadata
import os

import openai

# openai 3.x runs on httpx2, 2.x on httpx: the program uses whichever the installed SDK takes
if int(importlib.metadata.version("openai").split(".")[0]) >= 3:
    import httpx2
else:
    import httpx as httpx2
from openai import DefaultHttpxClient, OpenAI

model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
messages = [{"role": "user", "content": "through my own client"}]

http = DefaultHttpxClient(timeout=httpx2.Timeout(20.0, connect=5.0), headers={"x-app": "dropin"})
client = OpenAI(http_client=http, max_retries=1)
print(client.max_retries, client.timeout)
print(client.chat.completions.create(model=model, messages=messages).choices[0].message.content)

custom = OpenAI(http_client=httpx2.Client(timeout=30), timeout=httpx2.Timeout(10.0, read=7.0))
print(custom.timeout)
print(custom.chat.completions.create(model=model, messages=messages, timeout=3.5).choices[0].message.content)

floaty = OpenAI(timeout=12.5)
print(floaty.timeout)
quick = floaty.with_options(max_retries=0, timeout=5)
print(quick.max_retries, quick.timeout, floaty.max_retries)
print(quick.chat.completions.create(model=model, messages=messages).choices[0].message.content)
print(quick.responses.create(model=model, input="options too", timeout=httpx2.Timeout(4.0)).output_text)
try:
    quick.chat.completions.create(model="error:503", messages=messages)
except openai.InternalServerError as e:
    print("no retry", e.status_code)

with OpenAI(http_client=DefaultHttpxClient()) as closing:
    print(closing.embeddings.create(model="text-embedding-3-small", input="ctx", dimensions=4).data[0].embedding[:2] != [])
print(http.is_closed, client.is_closed() if callable(getattr(client, "is_closed", None)) else None)
