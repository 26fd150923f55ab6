"""The yardstick of the rate limiters' tests: the most sends in any one-second window."""

from __future__ import annotations

import collections


def max_in_any_second(times: list[float]) -> int:
    window: collections.deque[float] = collections.deque()
    most = 0
    for when in sorted(times):
        window.append(when)
        while window[0] <= when - 1.0:
            window.popleft()
        most = max(most, len(window))
    return most
