"""The deadline heap: schedule, reschedule, cancel, due, next_deadline (fake time)."""

from __future__ import annotations

from lispnet.core.timers import Timers


def test_due_in_order_and_reschedule() -> None:
    t: Timers[str] = Timers()
    assert t.next_deadline() is None
    t.schedule("a", 10.0)
    t.schedule("b", 5.0)
    t.schedule("c", 7.0)
    assert t.next_deadline() == 5.0
    t.schedule("b", 20.0)  # moved later: the stale heap entry is skipped
    assert t.next_deadline() == 7.0
    assert t.cancel("c") and not t.cancel("c")
    assert t.next_deadline() == 10.0
    assert t.due(9.9) == []
    assert t.due(10.0) == ["a"]
    assert len(t) == 1 and "b" in t and t.deadline("b") == 20.0
    assert t.due(100.0) == ["b"]
    assert t.next_deadline() is None and len(t) == 0


def test_heap_stays_bounded_under_refreshes() -> None:
    t: Timers[int] = Timers()
    for i in range(100):
        t.schedule(i, float(i))
    for r in range(50):
        for i in range(100):
            t.schedule(i, 1000.0 + r + i)
    assert len(t._heap) <= 2 * len(t) + 64 + 1
    assert t.due(1000.0 + 49 + 5) == [0, 1, 2, 3, 4, 5]
