import asyncio
import os

import openai
from openai import AsyncOpenAI

model = os.environ.get("DROPIN_MODEL", "gpt-4o-mini")


async def main() -> None:
    async with AsyncOpenAI(max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "async stream words"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            pieces.extend(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        print(pieces, usage.total_tokens)

        async with client.chat.completions.stream(
            model=model, messages=[{"role": "user", "content": "async helper"}]
        ) as helper:
            kinds = [event.type async for event in helper]
            final = await helper.get_final_completion()
        print(sorted(set(kinds)), final.choices[0].message.content)

        events = await client.responses.create(model=model, input="async responses stream", stream=True)
        text = ""
        async for event in events:
            if event.type == "response.output_text.delta":
                text += event.delta
        print(text)

        async with client.responses.stream(model=model, input="async responses helper") as rstream:
            count = 0
            async for event in rstream:
                count += 1
            final_response = await rstream.get_final_response()
        print(count > 3, final_response.output_text)

        try:
            await client.chat.completions.create(model="error:429", stream=True, messages=[{"role": "user", "content": "x"}])
        except openai.RateLimitError as e:
            print("async create() raised", e.status_code, e.response.headers.get("retry-after"))

        response = await client.responses.create(model=model, input="async plain")
        print(response.output_text, response.status)


asyncio.run(main())
