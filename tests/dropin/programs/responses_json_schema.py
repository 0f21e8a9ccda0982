import json
import os

from openai import OpenAI

client = OpenAI()
model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")
schema = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "population", "tags"],
    "additionalProperties": False,
}
response = client.responses.create(
    model=model,
    input="Describe Paris as JSON",
    text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
)
document = json.loads(response.output_text)
print(sorted(document), type(document["population"]).__name__, type(document["tags"]).__name__)
print(response.text.format.type, response.text.format.name)
