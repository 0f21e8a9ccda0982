import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")

with client.chat.completions.with_streaming_response.create(
    model=model, messages=[{"role": "user", "content": "streaming response body"}]
) as r:
    print(r.status_code, r.headers.get("content-type"), r.headers.get("x-request-id", "").startswith("req_"))
    completion = r.parse()
    print(type(completion).__name__, completion.choices[0].message.content)

with client.chat.completions.with_streaming_response.create(
    model=model, messages=[{"role": "user", "content": "stream lines"}], stream=True
) as r:
    print(r.status_code, r.headers.get("content-type", "").split(";")[0])
    lines = [line for line in r.iter_lines() if line]
    print(lines[-1], len(lines))
    print("".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines[:-1]))

with client.responses.with_streaming_response.create(model=model, input="responses body") as r:
    print(r.status_code, r.headers.get("content-type"))
    print(r.parse().output_text)

with client.responses.with_streaming_response.create(model=model, input="responses lines", stream=True) as r:
    events = [line.removeprefix("event: ") for line in r.iter_lines() if line.startswith("event: ")]
    print(events[0], events[-1])
