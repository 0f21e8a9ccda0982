import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
completion = client.chat.completions.create(
    model=model,
    messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello to the switchyard"},
    ],
    temperature=0.2,
    max_tokens=50,
)
choice = completion.choices[0]
print(choice.message.role, repr(choice.message.content), choice.finish_reason)
print(completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens)
print(sorted(completion.to_dict()) == sorted(completion.model_dump(exclude_unset=True)))
if not os.environ.get("DROPIN_MODEL"):
    print(completion.model_dump_json(exclude_unset=True, exclude={"id"}))
