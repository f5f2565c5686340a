"""The retry schedule: when deferred mail is tried again, given up, and warned about."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmail.queue.entry import Diagnostic, State
from tmail.queue.schedule import RetrySchedule

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
TEMPORARY = Diagnostic("4.4.1", "Connection refused")
PERMANENT = Diagnostic("5.1.1", "No such user", 550, "mx.example.net")

schedules = st.builds(
    RetrySchedule,
    firstRetry=st.floats(1.0, 2 * HOUR),
    factor=st.floats(1.0, 10.0),
    maxBackoff=st.floats(1.0, 10 * HOUR),
    lifetime=st.floats(0.0, 30 * DAY),
    delayWarning=st.floats(0.0, 2 * DAY),
)
attemptCounts = st.integers(1, 10**9)
times = st.floats(0.0, 4e9)


def test_defaults_wait_5_minutes_doubling_up_to_an_hour() -> None:
    schedule = RetrySchedule()
    delays = [schedule.retryDelay(n) / MINUTE for n in range(1, 9)]
    assert delays == [5, 10, 20, 40, 60, 60, 60, 60]


def test_defaults_give_up_after_5_days_and_warn_after_4_hours() -> None:
    schedule = RetrySchedule()
    assert not schedule.expired(0.0, 5 * DAY - 1)
    assert schedule.expired(0.0, 5 * DAY)
    assert not schedule.delayWarningDue(0.0, 4 * HOUR - 1)
    assert schedule.delayWarningDue(0.0, 4 * HOUR)


def test_a_message_failing_all_along_is_tried_about_125_times_and_last_at_expiry() -> None:
    schedule = RetrySchedule()
    now, attempts = 0.0, 1
    while not schedule.expired(0.0, now):
        now = schedule.nextAttempt(0.0, attempts, now)
        attempts += 1
    assert now == 5 * DAY
    assert 120 <= attempts <= 130


def test_judge_fails_permanent_errors_at_once_and_temporary_ones_at_expiry() -> None:
    schedule = RetrySchedule()
    assert schedule.judge(0.0, 1, PERMANENT, 10.0).state is State.FAILED
    deferred = schedule.judge(0.0, 1, TEMPORARY, 10.0)
    assert (deferred.state, deferred.nextAttempt) == (State.DEFERRED, 310.0)
    assert deferred.diagnostic == TEMPORARY
    expired = schedule.judge(0.0, 200, TEMPORARY, 5 * DAY)
    assert (expired.state, expired.diagnostic) == (State.FAILED, TEMPORARY)


def test_a_5xx_reply_is_permanent_whatever_its_status_says() -> None:
    assert Diagnostic("4.0.0", "odd", 550).permanent
    assert not Diagnostic("4.2.2", "Mailbox full", 452).permanent


def test_delay_warning_zero_sends_none() -> None:
    assert not RetrySchedule(delayWarning=0).delayWarningDue(0.0, 4 * DAY)


@pytest.mark.parametrize(
    "settings",
    [
        {"firstRetry": 0},
        {"maxBackoff": -1},
        {"factor": 0.5},
        {"lifetime": float("inf")},
        {"delayWarning": float("nan")},
    ],
)
def test_nonsense_settings_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetrySchedule(**settings)


@given(schedules, attemptCounts)
def test_a_wait_is_never_longer_than_the_cap_nor_shorter_than_the_first(
    schedule: RetrySchedule, attempts: int
) -> None:
    delay = schedule.retryDelay(attempts)
    assert min(schedule.firstRetry, schedule.maxBackoff) <= delay <= schedule.maxBackoff


@given(schedules, st.integers(1, 10**6), st.integers(1, 10**6))
def test_waits_never_get_shorter(schedule: RetrySchedule, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert schedule.retryDelay(low) <= schedule.retryDelay(high)


@given(schedules, times, attemptCounts, st.floats(0.0, 60 * DAY))
def test_the_next_attempt_is_later_and_not_past_the_expiry(
    schedule: RetrySchedule, arrival: float, attempts: int, elapsed: float
) -> None:
    now = arrival + elapsed
    at = schedule.nextAttempt(arrival, attempts, now)
    assert at <= now + schedule.maxBackoff
    if schedule.expired(arrival, now):
        assert at > now
    else:
        assert now < at <= schedule.expiry(arrival)


patientSchedules = st.builds(
    RetrySchedule,
    firstRetry=st.floats(MINUTE, 2 * HOUR),
    factor=st.floats(1.0, 10.0),
    maxBackoff=st.floats(MINUTE, 10 * HOUR),
    lifetime=st.floats(0.0, 10 * DAY),
)


@settings(deadline=None)
@given(patientSchedules, times, st.floats(0.0, 60 * DAY))
def test_retries_reach_the_expiry_and_then_fail_the_recipient(
    schedule: RetrySchedule, arrival: float, firstTry: float
) -> None:
    now, attempts = arrival + min(firstTry, schedule.lifetime), 1
    while not schedule.expired(arrival, now):
        outcome = schedule.judge(arrival, attempts, TEMPORARY, now)
        assert outcome.state is State.DEFERRED
        assert outcome.nextAttempt is not None
        now = outcome.nextAttempt
        attempts += 1
    shortest = min(schedule.firstRetry, schedule.maxBackoff)
    assert attempts <= schedule.lifetime / shortest + 2
    assert schedule.judge(arrival, attempts, TEMPORARY, now).state is State.FAILED


@given(schedules, times, st.floats(0.0, 60 * DAY))
def test_a_delay_warning_is_due_only_between_its_time_and_the_expiry(
    schedule: RetrySchedule, arrival: float, elapsed: float
) -> None:
    now = arrival + elapsed
    due = schedule.delayWarningDue(arrival, now)
    if due:
        assert schedule.delayWarning > 0
        assert now >= arrival + schedule.delayWarning
        assert not schedule.expired(arrival, now)
