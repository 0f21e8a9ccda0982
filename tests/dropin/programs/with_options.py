import os

import openai

client = openai.OpenAI(default_headers={"x-team": "search"})
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
quick = client.with_options(timeout=5.0, max_retries=1)
print(quick.max_retries, client.max_retries)
reply = quick.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "options work"}],
    extra_headers={"x-trace": "abc"},
    extra_body={"metadata": {"team": "search"}},
    timeout=10,
)
print(reply.choices[0].message.content)
print(openai.NOT_GIVEN is not None, bool(openai.NOT_GIVEN))
tool = openai.pydantic_function_tool
print(callable(tool))
