"""The Pareto front of latency against accuracy: the combinations no other one beats on both."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (latency, AP) points that no other point dominates (lower or equal latency and higher
    or equal AP, one of them strictly), in order of latency. Equal points are all kept."""
    front = []
    for i, (lat, ap) in enumerate(points):
        dominated = any(
            (ol <= lat and oa >= ap) and (ol < lat or oa > ap) for j, (ol, oa) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
