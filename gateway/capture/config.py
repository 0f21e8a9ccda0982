"""The per-route ``capture:`` section of a policy (pydantic: users write it, typos are refused).

```yaml
routes:
  support:
    candidates: [teacher]
    capture:
      sample_rate: 1.0          # share of successful replies kept, 0..1
      fields: [prompt, completion, tool_calls, metadata]
      redact:
        detectors: [email, api_key, card_number]   # the default: all three
        patterns: ["ACME-\\d{6}"]                  # more regular expressions
        function: "mypkg.privacy:scrub"           # a callable str -> str, applied last
      retention_days: 30        # older examples are deleted as new ones arrive
      store: .switchyard/captures.sqlite
```
"""

from __future__ import annotations

import re
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_CAPTURE_STORE", "CaptureConfig", "CaptureField", "Detector", "Redaction"]

DEFAULT_CAPTURE_STORE = ".switchyard/captures.sqlite"
CaptureField: TypeAlias = Literal["prompt", "completion", "tool_calls", "metadata"]
Detector: TypeAlias = Literal["email", "api_key", "card_number"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Redaction(_Section):
    detectors: list[Detector] = Field(
        default_factory=lambda: list[Detector](["email", "api_key", "card_number"])
    )
    patterns: list[str] = Field(default_factory=list)
    function: str | None = Field(default=None, pattern=r"^[\w.]+:[\w.]+$", description="module:function")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for index, pattern in enumerate(patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns[{index}] is not a regular expression: {exc}") from exc
        return patterns


class CaptureConfig(_Section):
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    fields: list[CaptureField] = Field(
        default_factory=lambda: list[CaptureField](["prompt", "completion", "tool_calls"])
    )
    redact: Redaction = Field(default_factory=Redaction)
    retention_days: float | None = Field(default=30, gt=0)
    store: str = DEFAULT_CAPTURE_STORE
