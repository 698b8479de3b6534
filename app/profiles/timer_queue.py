"""Which profiles a tick must visit: a queue of due times per partition.

A tick closes sessions whose time is up and runs rule evaluations that fell due
(:func:`app.profiles.state.tick`). Visiting every profile that has an open session or
a timed rule on every tick costs a table read (a decode, with compact:// and rocksdb://)
per profile every few seconds, which at a million profiles is more work than the events.
The queue hands a tick only the profiles whose earliest due time
(:func:`app.profiles.state.next_tick_at`) has come.

Examples
--------
>>> queue = TimerQueue()
>>> queue.set("p-b", 200.0); queue.set("p-a", 100.0); queue.set("p-c", 300.0)
>>> queue.set("p-c", None)          # p-c has nothing left to wait for
>>> queue.pop_due(250.0), len(queue)
(['p-a', 'p-b'], 0)
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

#: Stale heap entries (superseded due times) are dropped in one rebuild once they outnumber live ones by this.
COMPACT_FACTOR = 2
COMPACT_MIN = 1024


@dataclass
class TimerQueue:
    """Profile ids by due time. Each profile has at most one due time; setting a new one supersedes it."""

    heap: list[tuple[float, str]] = field(default_factory=list)
    due: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.due)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self.due

    def set(self, profile_id: str, at: float | None) -> None:
        """Make ``at`` the time ``profile_id`` is due (``None``: never)."""
        if at is None:
            self.due.pop(profile_id, None)  # its heap entry turns stale
            return
        if self.due.get(profile_id) == at:
            return
        self.due[profile_id] = at
        heapq.heappush(self.heap, (at, profile_id))
        if len(self.heap) > COMPACT_FACTOR * len(self.due) + COMPACT_MIN:
            self.heap = [(t, pid) for pid, t in self.due.items()]
            heapq.heapify(self.heap)

    def pop_due(self, now: float, limit: int | None = None) -> list[str]:
        """Remove and return the profiles due at or before ``now``, in profile-id order.

        The order is fixed so that a replayed tick emits what it emits in the same order.
        ``limit``: at most this many, the earliest due first (ties by profile id); the rest
        stay due for the next tick.

        >>> queue = TimerQueue()
        >>> for n, at in enumerate([30.0, 10.0, 20.0]): queue.set(f"p-{n}", at)
        >>> queue.pop_due(100.0, limit=2), queue.pop_due(100.0, limit=2)
        (['p-1', 'p-2'], ['p-0'])
        """
        return sorted(profile_id for _, profile_id in self.pop_due_at(now, limit))

    def pop_due_at(self, now: float, limit: int | None = None) -> list[tuple[float, str]]:
        """As :meth:`pop_due`, with each profile's due time, earliest first.

        >>> queue = TimerQueue()
        >>> queue.set("p-a", 20.0); queue.set("p-b", 10.0)
        >>> queue.pop_due_at(100.0)
        [(10.0, 'p-b'), (20.0, 'p-a')]
        """
        popped: list[tuple[float, str]] = []
        heap, due = self.heap, self.due
        while heap and heap[0][0] <= now and (limit is None or len(popped) < limit):
            at, profile_id = heapq.heappop(heap)
            if due.get(profile_id) == at:
                del due[profile_id]
                popped.append((at, profile_id))
        return popped
