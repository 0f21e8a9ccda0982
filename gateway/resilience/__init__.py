"""Resilience: retries, fallback decisions, circuit breakers, hedged requests and deadlines.

The request loops (``gateway/execute.py``, ``gateway/execute_async.py``) do the I/O; the decisions are
here, as small pieces: ``retry`` (should we retry, how long to wait), ``deadline`` (timeouts of one
request), ``breaker`` (per-deployment circuit breakers over the state backend), ``hedge`` (when to
race a second candidate), ``run`` (one request's way through its plan). See ``docs/resilience.md``.
"""
