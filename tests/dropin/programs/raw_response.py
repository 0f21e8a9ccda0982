import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
raw = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "raw please"}]
)
print(raw.status_code, raw.headers.get("content-type"), raw.headers.get("x-request-id", "").startswith("req_"))
completion = raw.parse()
print(completion.choices[0].message.content)
