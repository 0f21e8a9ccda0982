import os

import openai
from openai import OpenAI

client = OpenAI(max_retries=0)
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
messages = [{"role": "user", "content": "x"}]
for status in (429, 400, 500):
    try:
        s = client.chat.completions.create(model=f"error:{status}", stream=True, messages=messages)
        print("no error at create()", type(s).__name__)
        for chunk in s:
            pass
    except openai.RateLimitError as e:
        print("create() raised", type(e).__name__, e.status_code, e.response.headers.get("retry-after"))
        print(e.request_id, e.code, e.type, e.body["message"] if isinstance(e.body, dict) else e.body)
        print(e.response.status_code, e.response.json()["error"]["code"])
    except openai.BadRequestError as e:
        print("create() raised", type(e).__name__, e.status_code, e.response.headers.get("x-request-id"))
    except openai.InternalServerError as e:
        print("create() raised", type(e).__name__, e.status_code, isinstance(e, openai.APIStatusError))

try:
    client.responses.create(model="error:429", input="x", stream=True)
except openai.RateLimitError as e:
    print("responses create() raised", e.status_code, e.response.headers.get("retry-after"), e.request_id)

try:
    with client.chat.completions.stream(model="error:404", messages=messages) as stream:
        print("entered", stream)
except openai.NotFoundError as e:
    print("stream() raised", e.status_code, e.code)

fine = client.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "still fine"}])
print("".join(c.choices[0].delta.content or "" for c in fine if c.choices))
