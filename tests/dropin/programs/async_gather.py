# dropin: unordered
import asyncio
import os

from openai import AsyncOpenAI

model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")


async def main() -> None:
    async with AsyncOpenAI() as client:
        questions = ["one fish", "two fish", "red fish blue fish"]
        replies = await asyncio.gather(
            *(client.chat.completions.create(model=model, messages=[{"role": "user", "content": q}]) for q in questions)
        )
        for reply in replies:
            print(reply.choices[0].message.content, reply.usage.total_tokens)


asyncio.run(main())
