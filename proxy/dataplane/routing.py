"""Route lookup: the longest route that is a prefix of the request path on a segment boundary.

Strategy: routes live in a dict keyed by their exact text. A request path `/a/b/c` is looked up
as `/a/b/c`, then `/a/b`, then `/a`, then the root route — one dict probe per segment, so the
cost depends on the depth of the path, not on the number of connections (10,000 routes cost
the same as one). `/git` never matches `/github/x` because only whole segments are tried.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Router(Generic[T]):
    """Maps normalised routes (`/a/b`, or `""` for the root) to targets."""

    def __init__(self, routes: Iterable[tuple[str, T]] = ()) -> None:
        self._routes: dict[str, T] = dict(routes)

    def add(self, route: str, target: T) -> None:
        self._routes[route] = target

    def __contains__(self, route: str) -> bool:
        return route in self._routes

    def resolve(self, raw_path: str) -> tuple[T, str] | None:
        """Return `(target, tail)` where tail is the raw rest of the path after the route."""
        routes = self._routes
        end = len(raw_path)
        while end > 0:
            target = routes.get(raw_path[:end])
            if target is not None:
                return target, raw_path[end:]
            end = raw_path.rfind("/", 0, end)
        target = routes.get("")
        return (target, raw_path) if target is not None else None
