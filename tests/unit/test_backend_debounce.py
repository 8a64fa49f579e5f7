"""The ML backend's debounce: a burst of annotation events gives one re-rank (a fake clock, no sleeping)."""

import pytest

from activeft_label.backend.debounce import Debouncer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_becomes_one_job_after_the_quiet_period():
    clock = Clock()
    jobs = Debouncer(quiet=2.0, max_delay=30.0, clock=clock)
    for _ in range(10):           # ten annotations, 0.5 s apart
        jobs.poke("p1")
        assert jobs.take() is None
        clock.now += 0.5
    assert jobs.take() is None    # 0.5 s after the last event
    clock.now += 1.5
    assert jobs.take() == "p1"    # 2 s of quiet
    assert jobs.take() is None    # handed out once
    assert jobs.next_due() is None


def test_steady_events_still_run_after_max_delay():
    clock = Clock()
    jobs = Debouncer(quiet=2.0, max_delay=5.0, clock=clock)
    taken = []
    for _ in range(20):           # an event every second for 20 s: never 2 s of quiet
        jobs.poke("p")
        key = jobs.take()
        if key:
            taken.append(clock.now)
        clock.now += 1.0
    # a job 5 s after the first event of each burst; the next burst starts with the next event
    assert taken == [pytest.approx(105.0), pytest.approx(111.0), pytest.approx(117.0)]


def test_an_event_during_the_job_gives_one_more_job():
    clock = Clock()
    jobs = Debouncer(quiet=2.0, clock=clock)
    jobs.poke("p")
    clock.now += 2.0
    assert jobs.take() == "p"     # the job starts ...
    jobs.poke("p")                # ... an annotation arrives while it runs
    jobs.poke("p")
    assert jobs.pending("p")
    clock.now += 2.0
    assert jobs.take() == "p"
    assert jobs.take() is None


def test_immediate_keys_and_one_burst_per_key():
    clock = Clock()
    jobs = Debouncer(quiet=2.0, clock=clock)
    jobs.poke("a")
    jobs.poke("b", immediate=True)
    assert jobs.take() == "b"     # first ranking: no waiting
    assert jobs.take() is None
    clock.now += 2.0
    jobs.poke("c")
    assert jobs.take() == "a"     # c's burst is its own
    assert jobs.take() is None
    assert jobs.due_at("c") == pytest.approx(clock.now + 2.0)


def test_a_longer_quiet_period_for_one_event_is_not_cut_by_max_delay():
    clock = Clock()
    jobs = Debouncer(quiet=1.0, max_delay=5.0, clock=clock)
    jobs.poke("retry", quiet=60.0)
    clock.now += 30.0
    assert jobs.take() is None
    clock.now += 30.0
    assert jobs.take() == "retry"
    jobs.poke("x")
    jobs.cancel("x")
    assert not jobs.pending("x")


def test_bad_periods_are_refused():
    with pytest.raises(ValueError):
        Debouncer(quiet=-1)
    with pytest.raises(ValueError):
        Debouncer(quiet=10, max_delay=5)
