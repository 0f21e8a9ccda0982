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
response = client.responses.parse(model=model, input="Describe Paris", text_format=City)
parsed = response.output_parsed
print(type(response).__name__, type(parsed).__name__, parsed)
print(response.output[0].content[0].type, type(response.output[0].content[0].parsed).__name__)
