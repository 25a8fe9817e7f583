"""Dependency graph algorithms over step ids: order, cycles and ancestry.

The graph is given as ``upstream``: for each node, the nodes it waits for (its incoming
edges, possibly repeated). Edges to nodes that are not in ``nodes`` are ignored here;
reporting them is the checks' job. Every function is iterative, so a 10,000-step chain
cannot exhaust the interpreter's stack.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

Upstream = Mapping[str, Sequence[str]]


def downstream_map(nodes: Sequence[str], upstream: Upstream) -> dict[str, list[str]]:
    """Invert ``upstream``: for each node, the nodes that wait for it (with repeats)."""
    known = set(nodes)
    downstream: dict[str, list[str]] = {node: [] for node in nodes}
    for node in nodes:
        for parent in upstream.get(node, ()):
            if parent in known:
                downstream[parent].append(node)
    return downstream


def topological_order(nodes: Sequence[str], upstream: Upstream) -> tuple[list[str], list[str]]:
    """Order nodes with Kahn's algorithm; among ready nodes the earliest in ``nodes`` first.

    Args:
        nodes: Node ids in definition order (unique).
        upstream: Incoming edges of each node.

    Returns:
        ``(order, blocked)``: the nodes that can be ordered, and, in definition order,
        those that cannot because they are on a cycle or downstream of one.
    """
    position = {node: index for index, node in enumerate(nodes)}
    downstream = downstream_map(nodes, upstream)
    waiting = dict.fromkeys(nodes, 0)
    for children in downstream.values():
        for child in children:
            waiting[child] += 1
    ready = [position[node] for node in nodes if waiting[node] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for child in downstream[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    placed = set(order)
    return order, [node for node in nodes if node not in placed]


@dataclass(frozen=True)
class Cycle:
    """Nodes that wait for each other.

    Attributes:
        path: The nodes of one cycle in edge order: ``("a", "b")`` is
            ``a -> b -> a`` (b waits for a, a waits for b).
        component: Every node of the strongly connected component holding ``path``,
            in definition order; more than ``path`` when several cycles intertwine.
    """

    path: tuple[str, ...]
    component: tuple[str, ...]

    def describe(self) -> str:
        """Return ``"a -> b -> c -> a"``, naming the other intertwined nodes if any."""
        text = " -> ".join((*self.path, self.path[0]))
        others = [node for node in self.component if node not in self.path]
        if others:
            text += f" (also on cycles with these: {', '.join(others)})"
        return text


def find_cycles(nodes: Sequence[str], upstream: Upstream) -> list[Cycle]:
    """Find one cycle per strongly connected component of more than one node.

    Self-loops alone are not reported: a step that depends on itself is a problem of
    its own. Each cycle is the shortest one through the component's earliest node.

    Args:
        nodes: Node ids in definition order (typically the ``blocked`` nodes of
            :func:`topological_order`; other nodes are on no cycle).
        upstream: Incoming edges of each node.

    Returns:
        Cycles ordered by their first node's position in ``nodes``.
    """
    downstream = downstream_map(nodes, upstream)
    position = {node: index for index, node in enumerate(nodes)}
    cycles: list[Cycle] = []
    for component in _strong_components(nodes, downstream):
        if len(component) > 1:
            ordered = tuple(sorted(component, key=position.__getitem__))
            path = _shortest_cycle(ordered[0], set(component), downstream)
            cycles.append(Cycle(path, ordered))
    return sorted(cycles, key=lambda cycle: position[cycle.path[0]])


def _strong_components(
    nodes: Sequence[str], downstream: Mapping[str, list[str]]
) -> Iterator[list[str]]:
    """Tarjan's algorithm, with an explicit stack instead of recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            node, next_child = work.pop()
            if next_child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = downstream[node]
            if next_child < len(children):
                work.append((node, next_child + 1))
                child = children[next_child]
                if child not in index:
                    work.append((child, 0))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                yield component


def _shortest_cycle(
    start: str, members: set[str], downstream: Mapping[str, list[str]]
) -> tuple[str, ...]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in downstream[node]:
            if child == start and node != start:
                return _walk_back(node, came_from, start)
            if child in members and child not in came_from and child != node:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"{start!r} is on no cycle of its component")  # pragma: no cover


def _walk_back(last: str, came_from: Mapping[str, str], start: str) -> tuple[str, ...]:
    path = [last]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return tuple(reversed(path))


class Ancestry:
    """Answers "is X (transitively) upstream of Y?" in constant time.

    Each ordered node's ancestors are one integer bit set, built in a single pass over
    the topological order, so even a 1,000-step chain costs well under a millisecond.
    Nodes left out of the order (on or after a cycle) are answered by a search.
    """

    def __init__(self, order: Sequence[str], upstream: Upstream) -> None:
        self._upstream = upstream
        self._bit = {node: 1 << index for index, node in enumerate(order)}
        self._order = tuple(order)
        self._mask: dict[str, int] = {}
        for node in order:
            mask = 0
            for parent in upstream.get(node, ()):
                if parent in self._mask:
                    mask |= self._mask[parent] | self._bit[parent]
            self._mask[node] = mask

    def is_upstream(self, candidate: str, node: str) -> bool:
        """Whether ``node`` (transitively) waits for ``candidate``."""
        if node in self._mask:
            return bool(self._mask[node] & self._bit.get(candidate, 0))
        return candidate in self._search(node)

    def ancestors(self, node: str) -> frozenset[str]:
        """Every node that ``node`` (transitively) waits for."""
        if node in self._mask:
            mask = self._mask[node]
            return frozenset(other for other in self._order if mask & self._bit[other])
        return self._search(node)

    def _search(self, node: str) -> frozenset[str]:
        seen: set[str] = set()
        queue = deque(self._upstream.get(node, ()))
        while queue:
            parent = queue.popleft()
            if parent not in seen:
                seen.add(parent)
                queue.extend(self._upstream.get(parent, ()))
        return frozenset(seen)
