import os

import openai
from openai import OpenAI

client = OpenAI(max_retries=0)
prefix = os.environ.get("DROPIN_ERROR_PREFIX", "")
for status in (400, 401, 404, 429, 500):
    try:
        client.chat.completions.create(model=f"{prefix}error:{status}", messages=[{"role": "user", "content": "x"}])
    except openai.RateLimitError as e:
        print("rate limited", e.status_code, type(e.body).__name__, isinstance(e, openai.APIStatusError))
    except openai.AuthenticationError as e:
        print("auth", e.status_code)
    except openai.NotFoundError as e:
        print("not found", e.status_code)
    except openai.BadRequestError as e:
        print("bad request", e.status_code, e.message.startswith("Error code: 400"))
    except openai.APIStatusError as e:
        print("status", e.status_code, isinstance(e, openai.InternalServerError))

try:
    OpenAI(base_url="http://127.0.0.1:9/v1", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
except openai.APIConnectionError as e:
    print("connection", type(e).__name__, isinstance(e, openai.APIError))

try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[], not_a_parameter=1)
except TypeError:
    print("TypeError for an unknown argument")
