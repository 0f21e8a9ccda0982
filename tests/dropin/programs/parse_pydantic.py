import os

from openai import OpenAI
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str
    population: int
    tags: list[str]


client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
completion = client.chat.completions.parse(
    model=model,
    messages=[{"role": "user", "content": "Describe Paris"}],
    response_format=City,
)
message = completion.choices[0].message
print(type(message.parsed).__name__, message.parsed)
print(message.refusal)
