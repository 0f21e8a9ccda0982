"""Metering: token counts, prices, one usage record per attempt that consumed tokens, and sinks.

Wire a meter into a client as its observer (with telemetry beside it, if wanted):

```python
from gateway import OpenAI
from gateway.metering import Meter, ObserverGroup, StateSink
from gateway.telemetry import Telemetry

meter = Meter(StateSink.from_url("sqlite:///var/lib/switchyard/state.sqlite"))
client = OpenAI(observer=ObserverGroup(meter, Telemetry()))
...
meter.close()  # also happens at interpreter exit
```

See ``docs/metering.md`` for how usage is counted, the record's fields and the sinks.
"""

from __future__ import annotations

from gateway.metering.meter import AttemptTokens, Meter, MeterStats, attempt_tokens, usage_record
from gateway.metering.observers import ObserverGroup
from gateway.metering.pricing import ModelPrice, PriceTable
from gateway.metering.records import UsageRecord, api_key_id
from gateway.metering.sinks import BufferedWriter, CallbackSink, MemorySink, Sink, StateSink, WriterStats
from gateway.metering.tokens import CountFn, TokenCount, count_chat, count_text, count_tools, encoding_for

__all__ = [
    "AttemptTokens",
    "BufferedWriter",
    "CallbackSink",
    "CountFn",
    "MemorySink",
    "Meter",
    "MeterStats",
    "ModelPrice",
    "ObserverGroup",
    "PriceTable",
    "Sink",
    "StateSink",
    "TokenCount",
    "UsageRecord",
    "WriterStats",
    "api_key_id",
    "attempt_tokens",
    "count_chat",
    "count_text",
    "count_tools",
    "encoding_for",
    "usage_record",
]
