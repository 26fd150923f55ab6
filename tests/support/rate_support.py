"""The rate limiters' tests: their yardstick (the most sends in any one-second window) and
their one fake server (``WindowServer``: the simulator's own QPS window, in arithmetic)."""

from __future__ import annotations

import collections

from qianfan_export_wait.simulator.config import QpsWindowKind
from qianfan_export_wait.simulator.limits import QpsWindow


def max_in_any_second(times: list[float]) -> int:
    window: collections.deque[float] = collections.deque()
    most = 0
    for when in sorted(times):
        window.append(when)
        while window[0] <= when - 1.0:
            window.popleft()
        most = max(most, len(window))
    return most


class WindowServer:
    """A server that admits at most ``limit`` requests per second: the simulator's own
    QPS window, sliding (never more within any one second) or fixed."""

    def __init__(self, limit: int, kind: QpsWindowKind = "sliding") -> None:
        self.window = QpsWindow(limit, kind)

    def admit(self, now: float) -> bool:
        """Whether a request at ``now`` is answered (else it is throttled)."""
        return self.window.try_acquire(now)
