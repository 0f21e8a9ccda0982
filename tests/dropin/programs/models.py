# Models go to the client's own endpoint with either import: the loopback server lists two.
import asyncio

from openai import AsyncOpenAI, OpenAI

client = OpenAI()
model = client.models.retrieve("gpt-4o-mini")
print(type(model).__name__, model.id, model.object, model.owned_by)
page = client.models.list()
print(type(page).__name__, [m.id for m in page])
print([m.id for m in page.data], page.has_next_page())


async def main() -> None:
    async with AsyncOpenAI() as aclient:
        model = await aclient.models.retrieve("gpt-4o-mini")
        print("async", model.id, model.created)
        ids = [m.id async for m in aclient.models.list()]
        print("async", ids)


asyncio.run(main())
