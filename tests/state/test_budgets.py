"""Budgets over every backend: boundaries, all-or-nothing holds, settlement, windows and leases."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway.budgets import Budget, Budgets, BudgetStatus, Cost, Subject, window
from gateway.core.errors import BudgetExceededError, RateLimitError

TEAM_A = Subject(team="a", key="key-1", route="support")
USD = Decimal


def usd(amount: str) -> Cost:
    return Cost(usd=USD(amount))


@pytest.fixture
def dollar(backend, clock) -> Budgets:
    return Budgets(backend, [Budget("team-daily", USD("1.00"), "usd", "day", "team")], clock=clock)


def test_exactly_at_the_limit_is_admitted_and_one_micro_dollar_over_is_refused(dollar, clock):
    dollar.reserve(TEAM_A, usd("0.60"))
    dollar.reserve(TEAM_A, usd("0.40"))  # brings the budget exactly to $1.00
    with pytest.raises(BudgetExceededError) as caught:
        dollar.reserve(TEAM_A, usd("0.000001"))
    error = caught.value
    _, day_end = window("day", clock())
    assert (error.budget, error.reset_at, error.status_code) == ("team-daily", day_end, 429)
    assert error.retry_after_s == pytest.approx(day_end - clock())
    assert isinstance(error, RateLimitError)
    assert "team-daily" in str(error) and "resets at" in str(error)


def test_just_under_the_limit_leaves_exactly_the_rest(dollar):
    dollar.reserve(TEAM_A, usd("0.999999"))
    dollar.reserve(TEAM_A, usd("0.000001"))
    with pytest.raises(BudgetExceededError):
        dollar.reserve(TEAM_A, usd("0.000001"))
    dollar.reserve(TEAM_A, usd("0"))  # a zero-cost request still fits a full budget


def test_fractions_of_a_micro_dollar_round_up_for_costs_and_down_for_limits(backend, clock):
    budgets = Budgets(backend, [Budget("tiny", USD("0.0000029"), scope="global")], clock=clock)
    budgets.reserve(TEAM_A, usd("0.0000001"))  # counts as 1 micro-dollar; the limit counts as 2
    budgets.reserve(TEAM_A, usd("0.000001"))
    with pytest.raises(BudgetExceededError):
        budgets.reserve(TEAM_A, usd("0.0000001"))


def test_token_budget_boundary(backend, clock):
    budgets = Budgets(backend, [Budget("tokens", 1000, "tokens", "minute", "key")], clock=clock)
    budgets.reserve(TEAM_A, Cost(tokens=999))
    budgets.reserve(TEAM_A, Cost(tokens=1))
    with pytest.raises(BudgetExceededError):
        budgets.reserve(TEAM_A, Cost(tokens=1))
    clock.advance(60)  # the next minute refills it
    budgets.reserve(TEAM_A, Cost(tokens=1000))


def test_holds_are_all_or_nothing_across_budgets(backend, clock):
    team = Budget("team", USD("10"), scope="team")
    key = Budget("key", USD("1"), scope="key")
    budgets = Budgets(backend, [team, key], clock=clock)
    with pytest.raises(BudgetExceededError) as caught:
        budgets.reserve(TEAM_A, usd("2"))
    assert caught.value.budget == "key"
    _, end = window("day", clock())
    assert budgets.status(TEAM_A) == [
        BudgetStatus("team", "usd", USD("10"), USD(0), USD(0), end),
        BudgetStatus("key", "usd", USD("1"), USD(0), USD(0), end),
    ]


def test_settle_to_actual_is_idempotent_and_release_after_settle_is_a_no_op(dollar):
    hold = dollar.reserve(TEAM_A, usd("0.80"))
    for _ in range(3):
        dollar.settle(hold, usd("0.25"))
    dollar.release(hold)
    assert [s.used for s in dollar.status(TEAM_A)] == [USD("0.25")]
    assert [s.reserved for s in dollar.status(TEAM_A)] == [USD(0)]
    dollar.reserve(TEAM_A, usd("0.75"))


def test_release_on_failure_gives_the_room_back(dollar):
    hold = dollar.reserve(TEAM_A, usd("1.00"))
    dollar.release(hold)
    dollar.reserve(TEAM_A, usd("1.00"))


def test_scopes_separate_teams_and_global_is_shared(backend, clock):
    per_team = Budgets(backend, [Budget("per-team", 10, "tokens", scope="team")], clock=clock)
    per_team.reserve(Subject(team="a"), Cost(tokens=10))
    per_team.reserve(Subject(team="b"), Cost(tokens=10))
    everyone = Budgets(backend, [Budget("everyone", 10, "tokens", scope="global")], clock=clock)
    everyone.reserve(Subject(team="a"), Cost(tokens=10))
    with pytest.raises(BudgetExceededError):
        everyone.reserve(Subject(team="b"), Cost(tokens=1))


def test_a_hold_from_a_dead_process_expires_with_its_lease(backend, clock):
    budgets = Budgets(backend, [Budget("b", 100, "tokens")], lease_s=5, clock=clock)
    budgets.reserve(TEAM_A, Cost(tokens=100))  # never settled: its process "died"
    clock.advance(4.9)
    with pytest.raises(BudgetExceededError):
        budgets.reserve(TEAM_A, Cost(tokens=1))
    clock.advance(0.1)
    budgets.reserve(TEAM_A, Cost(tokens=100))


def test_a_call_that_straddles_the_window_end_is_charged_to_the_new_window(backend, clock):
    clock.now = datetime(2027, 3, 1, 23, 59, 59, tzinfo=UTC).timestamp()
    budgets = Budgets(backend, [Budget("daily", 100, "tokens")], clock=clock)
    hold = budgets.reserve(TEAM_A, Cost(tokens=100))
    clock.advance(2)
    budgets.settle(hold, Cost(tokens=70))
    assert [s.used for s in budgets.status(TEAM_A)] == [70]


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("minute", datetime(2027, 3, 1, 10, 5, 30), datetime(2027, 3, 1, 10, 5), datetime(2027, 3, 1, 10, 6)),
        ("hour", datetime(2027, 3, 1, 10, 5, 30), datetime(2027, 3, 1, 10), datetime(2027, 3, 1, 11)),
        ("day", datetime(2027, 3, 1, 10, 5, 30), datetime(2027, 3, 1), datetime(2027, 3, 2)),
        ("month", datetime(2028, 2, 29, 23, 59, 59), datetime(2028, 2, 1), datetime(2028, 3, 1)),
        ("month", datetime(2027, 12, 31, 12), datetime(2027, 12, 1), datetime(2028, 1, 1)),
    ],
)
def test_windows_are_utc_calendar_windows(period, at, start, end):
    stamp = at.replace(tzinfo=UTC).timestamp()
    expected = (start.replace(tzinfo=UTC).timestamp(), end.replace(tzinfo=UTC).timestamp())
    assert window(period, stamp) == expected


async def test_async_reserve_and_settle(dollar):
    hold = await dollar.areserve(TEAM_A, usd("0.5"))
    await dollar.asettle(hold, usd("0.5"))
    with pytest.raises(BudgetExceededError):
        await dollar.areserve(TEAM_A, usd("0.6"))
    await dollar.arelease(hold)  # after settlement: nothing to release


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": USD(-1)}, "limit must be >= 0"),
        ({"unit": "euro"}, "unit must be"),
        ({"period": "week"}, "period must be"),
        ({"scope": "org"}, "scope must be"),
    ],
)
def test_invalid_budgets_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Budget(**{"name": "b", "limit": USD(1), **kwargs})


def test_duplicate_budget_names_are_refused(backend):
    with pytest.raises(ValueError, match="unique"):
        Budgets(backend, [Budget("b", USD(1)), Budget("b", USD(2))])


def test_match_limits_a_budget_to_the_requests_it_names(backend, clock):
    support = Budget("support", 100, "tokens", scope="global", match=(("route", "support"),))
    budgets = Budgets(backend, [support], clock=clock)
    budgets.reserve(Subject(route="support"), Cost(tokens=100))
    budgets.reserve(Subject(route="batch"), Cost(tokens=10_000))  # not counted
    with pytest.raises(BudgetExceededError):
        budgets.reserve(Subject(team="b", route="support"), Cost(tokens=1))
    assert budgets.status(Subject(route="batch")) == []
    with pytest.raises(ValueError, match="cannot match on 'colour'"):
        Budget("b", 1, match=(("colour", "red"),))


def test_sequential_overruns_overspend_by_at_most_one_request(backend, clock):
    budgets = Budgets(backend, [Budget("b", 1000, "tokens")], clock=clock)
    while True:
        try:
            hold = budgets.reserve(TEAM_A, Cost(tokens=100))
        except BudgetExceededError:
            break
        budgets.settle(hold, Cost(tokens=150))  # the estimate was 50 % short
    used = budgets.status(TEAM_A)[0].used
    assert used == 1050  # the 7th call was admitted at 900 (900 + 100 fits) and cost 150
    assert 0 < used - 1000 <= 150
