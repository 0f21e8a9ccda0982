"""What a non-streamed answer is charged when its body is cut after a success status (or is over the size cap).

The upstream answered with a success status, so it read the prompt and generated the completion,
and it bills both; the gateway never saw the usage the body would have carried. The attempt's record
carries:

- the prompt, counted with the candidate's tokenizer (``tokens.count_chat``);
- the completion at the attempt's **output ceiling**: the request's ``max_tokens`` (or
  ``max_completion_tokens``) when given, else the output its budget reservation assumed for that
  candidate (``Plan.output_ceilings``, set by ``Guard.admit``: the route's observed p99 output for the
  model, capped by the model's maximum), else the model's maximum output in the catalog, else
  ``DEFAULT_WORST_OUTPUT``;

marked estimated. The completion cannot have been longer than the ceiling the request set, and is
charged at the figure the budget held for it, so a cut body never costs a budget less than the
upstream billed (with ``max_tokens``) or than the reservation admitted (without). The price of the
choice: an answer shorter than the ceiling is overcharged by the difference, on an attempt that is
already an error (``docs/metering.md``).
"""

from __future__ import annotations

from gateway.core.attempts import Candidate, Outcome, Plan
from gateway.core.types import ChatRequest, CompletionUsage
from gateway.metering.tokens import count_chat

__all__ = ["cut_body_outcome", "output_ceiling"]


def output_ceiling(req: ChatRequest, candidate: Candidate, plan: Plan) -> int:
    """The most completion tokens ``candidate`` may have generated for ``req``, as its budget saw it."""
    if req.max_output_tokens is not None:
        return req.max_output_tokens
    ceilings = plan.output_ceilings
    if ceilings is not None and candidate.name in ceilings:
        return ceilings[candidate.name]
    from gateway.catalog import load_catalog
    from gateway.guard import output_cap

    return output_cap(load_catalog().models.get(candidate.name))


def cut_body_outcome(req: ChatRequest | None, candidate: Candidate, plan: Plan) -> Outcome | None:
    """The estimated usage of an answer whose body failed after a success status; ``None`` for a
    request that is not a chat (nothing to count)."""
    if req is None:
        return None
    prompt = count_chat(req.messages, candidate.name, req.tools).tokens
    completion = output_ceiling(req, candidate, plan)
    usage = CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
    return Outcome(usage=usage, estimated=True)
