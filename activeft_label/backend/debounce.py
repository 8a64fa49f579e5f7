"""Debouncing: a burst of events for one key becomes one piece of work (pure, with an injectable clock)."""

import threading
import time


class Debouncer:
    """Keys that become due once their events have been quiet for ``quiet`` seconds.

    :meth:`poke` records an event for a key.  The key is due ``quiet`` s after
    its latest event, but never later than ``max_delay`` s after the first
    event of the burst (so steady annotating still re-ranks), and at once
    after ``poke(key, immediate=True)``.  :meth:`take` hands out due keys one
    at a time and forgets them; an event that arrives while the work for a
    key runs starts a new burst, so that work runs again afterwards.

    Thread-safe.  ``clock`` (default :func:`time.monotonic`) is injectable
    for tests.
    """

    def __init__(self, quiet=2.0, max_delay=30.0, clock=time.monotonic):
        if quiet < 0 or max_delay < quiet:
            raise ValueError(f"need 0 <= quiet <= max_delay, got quiet={quiet}, max_delay={max_delay}")
        self.quiet = float(quiet)
        self.max_delay = float(max_delay)
        self.clock = clock
        self._pending = {}  # key -> (first event time, latest event time, immediate)
        self._lock = threading.Lock()

    def poke(self, key, immediate=False, quiet=None):
        """Record an event for ``key``.

        ``quiet`` overrides the quiet period of this event (a retry in a
        minute, say); the burst then waits at most ``max(max_delay, quiet)``.
        """
        now = self.clock()
        with self._lock:
            first, _, was_immediate, _ = self._pending.get(key, (now, now, False, None))
            wait = self.quiet if quiet is None else float(quiet)
            self._pending[key] = (first, now, was_immediate or bool(immediate), wait)

    def due_at(self, key):
        """When ``key`` becomes due (clock time), or None when nothing is pending for it."""
        with self._lock:
            return self._due_at(key)

    def _due_at(self, key):
        entry = self._pending.get(key)
        if entry is None:
            return None
        first, latest, immediate, wait = entry
        if immediate:
            return first
        return min(latest + wait, first + max(self.max_delay, wait))

    def next_due(self):
        """The earliest due time of any pending key, or None."""
        with self._lock:
            times = [self._due_at(key) for key in self._pending]
        return min(times) if times else None

    def take(self):
        """A key that is due now (the one due earliest), removed from the pending ones; None when none is due."""
        now = self.clock()
        with self._lock:
            due = [(self._due_at(key), key) for key in self._pending]
            due = [item for item in due if item[0] <= now]
            if not due:
                return None
            due.sort(key=lambda item: item[0])
            key = due[0][1]
            del self._pending[key]
            return key

    def pending(self, key):
        """Whether an event for ``key`` waits."""
        with self._lock:
            return key in self._pending

    def cancel(self, key):
        with self._lock:
            self._pending.pop(key, None)
