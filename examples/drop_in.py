"""Swap one import line: code written for the openai SDK runs on Switchyard unchanged.

python examples/drop_in.py
"""

from __future__ import annotations

from loopback_upstream import serve

import gateway
from gateway import OpenAI, RateLimitError  # was: from openai import OpenAI, RateLimitError

with serve() as base_url:
    client = OpenAI(api_key="sk-example", base_url=base_url)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello, switchyard!"}]
    )
    print(reply.choices[0].message.content)
    print(
        "tokens:",
        reply.usage.total_tokens,
        "| served by:",
        gateway.info(reply).provider,
        gateway.info(reply).model,
    )

    print("streamed:", end="")
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one word at a time"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

with serve(fail_with=429) as base_url:
    try:
        OpenAI(api_key="sk-example", base_url=base_url, max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    except RateLimitError as error:  # the same except clauses as with the openai SDK
        print("rate limited:", error.status_code, error.body["message"])
