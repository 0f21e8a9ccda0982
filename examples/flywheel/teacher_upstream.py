"""The flywheel example's task and its "teacher": a loopback OpenAI-compatible server (stdlib only).

The task is a fixed-format extraction: ``Extract the city: <sentence>`` -> the city, and nothing
else (``Porto``). The bundled 135M model echoes the sentence instead; the teacher, standing in for
a frontier model, answers every prompt correctly and deterministically (it knows the cities).

Token counts are about four characters a token, so the gateway prices each call as a real
upstream's usage would.
"""

from __future__ import annotations

import json
import random
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INSTRUCTION = "Extract the city: "
CITIES = (
    "Porto", "Lyon", "Ghent", "Bergen", "Krakow", "Seville", "Turin", "Leipzig", "Graz", "Utrecht",
    "Malmo", "Tampere", "Brno", "Cork", "Bilbao", "Bologna", "Nantes", "Aarhus", "Basel", "Split",
    "Lisbon", "Dublin", "Vienna", "Prague", "Madrid", "Berlin", "Munich", "Zurich", "Oslo", "Riga",
    "Tallinn", "Vilnius", "Warsaw", "Budapest", "Sofia", "Athens", "Naples", "Florence", "Geneva",
    "Lille", "Bordeaux", "Marseille", "Hamburg", "Cologne", "Antwerp", "Rotterdam", "Gothenburg",
    "Helsinki", "Copenhagen", "Salzburg", "Valencia", "Granada", "Toulouse", "Dresden", "Bremen",
    "Bruges", "Leeds", "Glasgow", "Cardiff", "Belfast", "Boston", "Denver", "Austin", "Seattle",
    "Chicago", "Toronto", "Montreal", "Vancouver", "Osaka", "Kyoto", "Seoul", "Busan", "Hanoi",
    "Manila", "Jakarta", "Lima", "Quito", "Bogota", "Santiago", "Nairobi", "Accra", "Lagos", "Cairo",
    "Tunis", "Dakar", "Perth", "Adelaide", "Auckland", "Wellington", "Mumbai", "Pune", "Dhaka",
)  # fmt: skip
NAMES = (
    "Maria Lopez", "Tom Becker", "Anna Novak", "Liam Walsh", "Sara Rossi", "Jonas Berg", "Emma Dubois",
    "Noah Fischer", "Mia Jansen", "Lucas Silva", "Ella Moreau", "Omar Haddad", "Yuki Tanaka", "Priya Nair",
)  # fmt: skip
TEMPLATES = (
    "{name} flew to {city} on Monday.",
    "Yesterday {name} opened a bakery in {city}.",
    "The conference moves to {city} next spring, says {name}.",
    "Please ship the order for {name} to our {city} office.",
    "{name} was born in {city} and still lives there.",
    "Our new warehouse in {city} is run by {name}.",
    "Tickets for the {city} concert sold out, {name} wrote.",
    "{name} asked whether the train to {city} is delayed.",
    "The meeting with {name} is in {city} at noon.",
    "Weather in {city} was perfect for {name}'s wedding.",
    "{name} moved from {city} to the coast last year.",
    "Can you book {name} a hotel in {city} for two nights?",
)
UNSEEN_CITIES = CITIES[60:]  # never in the example's traffic: what copying, not memory, would need
TRAFFIC_CITIES = CITIES[:60]


def make_cases(count: int, seed: int, cities: tuple[str, ...] = CITIES) -> list[tuple[str, str]]:
    """``count`` (prompt, city) pairs, drawn with ``seed`` from ``cities``."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        city, name, template = rng.choice(cities), rng.choice(NAMES), rng.choice(TEMPLATES)
        cases.append((INSTRUCTION + template.format(name=name, city=city), city))
    return cases


def answer(prompt: str) -> str:
    """The teacher's reply: the city the sentence names (the first, by position)."""
    found = [(prompt.find(city), city) for city in CITIES if city in prompt]
    return min(found)[1] if found else "unknown"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


@contextmanager
def serve() -> Iterator[str]:
    """Run the teacher in a thread; yields its base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            prompt = str(body["messages"][-1].get("content") or "")
            text = answer(prompt)
            prompt_tokens = sum(_tokens(str(m.get("content") or "")) for m in body["messages"])
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": _tokens(text),
                "total_tokens": prompt_tokens + _tokens(text),
            }
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            reply = {
                "id": f"chatcmpl-teacher-{zlib.crc32(prompt.encode()):08x}",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body.get("model", "teacher"),
                "choices": [choice],
                "usage": usage,
            }
            payload = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("x-request-id", reply["id"])
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
