import os

import openai
from openai import OpenAI

client = OpenAI(max_retries=0)
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "which request"}])
print(type(reply._request_id).__name__, reply._request_id.startswith("req_"))
response = client.responses.create(model=model, input="which response")
print(type(response._request_id).__name__, response._request_id.startswith("req_"))
embedding = client.embeddings.create(model="text-embedding-3-small", input="id")
print(embedding._request_id)
raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "raw id"}])
print(raw.request_id == raw.headers.get("x-request-id"), raw.parse()._request_id == raw.request_id)
try:
    client.chat.completions.create(model="error:500", messages=[{"role": "user", "content": "x"}])
except openai.InternalServerError as e:
    print(e.request_id, e.response.headers.get("x-request-id"))
