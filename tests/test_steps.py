"""A step of long work ends after its time or its number of items, whichever comes first."""

from __future__ import annotations

from tmail.steps import StepBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_step_ends_after_its_number_of_items() -> None:
    budget = StepBudget(seconds=1.0, items=3, clock=FakeClock())
    assert [budget.spent() for _ in range(7)] == [False, False, True, False, False, True, False]


def test_a_step_ends_once_its_time_is_spent_and_the_next_starts_afresh() -> None:
    clock = FakeClock()
    budget = StepBudget(seconds=0.002, items=1000, clock=clock)
    assert not budget.spent()
    clock.now += 0.001
    assert not budget.spent()
    clock.now += 0.001
    assert budget.spent()
    clock.now += 0.0015
    assert not budget.spent()
    clock.now += 0.001
    assert budget.spent()


def test_the_defaults_bound_a_step_to_milliseconds() -> None:
    assert 0 < StepBudget.SECONDS <= 0.005
    assert StepBudget.ITEMS >= 64
