"""Graph algorithms: Kahn order with definition-order ties, cycles, ancestry."""

from __future__ import annotations

import pytest

from flowledger.domain.definition.graph import (
    Ancestry,
    Cycle,
    downstream_map,
    find_cycles,
    topological_order,
)


def test_downstream_map_inverts_and_ignores_unknown_nodes() -> None:
    upstream = {"b": ["a", "ghost"], "c": ["a", "a"]}
    assert downstream_map(["a", "b", "c"], upstream) == {"a": ["b", "c", "c"], "b": [], "c": []}


def test_independent_nodes_keep_definition_order() -> None:
    assert topological_order(["c", "a", "b"], {}) == (["c", "a", "b"], [])


def test_ready_ties_are_broken_by_definition_order_not_by_readiness() -> None:
    # z becomes ready before b and c, yet b and c come first in the definition.
    nodes = ["a", "z", "b", "c"]
    upstream = {"z": ["a"], "b": ["a"]}
    assert topological_order(nodes, upstream)[0] == ["a", "z", "b", "c"]
    nodes = ["a", "b", "c", "z"]
    assert topological_order(nodes, upstream)[0] == ["a", "b", "c", "z"]


def test_a_dependant_defined_first_still_comes_after_its_dependency() -> None:
    order, blocked = topological_order(["join", "left", "right"], {"join": ["right", "left"]})
    assert order == ["left", "right", "join"]
    assert blocked == []


def test_repeated_edges_are_counted_consistently() -> None:
    assert topological_order(["a", "b"], {"b": ["a", "a"]}) == (["a", "b"], [])


def test_nodes_on_and_after_a_cycle_are_blocked() -> None:
    nodes = ["root", "x", "y", "after", "free"]
    upstream = {"x": ["root", "y"], "y": ["x"], "after": ["y"]}
    order, blocked = topological_order(nodes, upstream)
    assert order == ["root", "free"]
    assert blocked == ["x", "y", "after"]


def test_find_cycles_names_the_nodes_in_edge_order() -> None:
    # c waits for b, b for a, a for c: a -> b -> c -> a.
    upstream = {"a": ["c"], "b": ["a"], "c": ["b"]}
    assert find_cycles(["a", "b", "c"], upstream) == [Cycle(("a", "b", "c"), ("a", "b", "c"))]
    assert find_cycles(["a", "b", "c"], upstream)[0].describe() == "a -> b -> c -> a"


def test_each_separate_cycle_is_reported() -> None:
    nodes = ["p", "q", "r", "s", "t"]
    upstream = {"p": ["q"], "q": ["p"], "s": ["t"], "t": ["s", "q"]}
    cycles = find_cycles(nodes, upstream)
    assert [cycle.path for cycle in cycles] == [("p", "q"), ("s", "t")]


def test_intertwined_cycles_name_every_node_involved() -> None:
    # a <-> b and b <-> c: one strongly connected component.
    upstream = {"a": ["b"], "b": ["a", "c"], "c": ["b"]}
    (cycle,) = find_cycles(["a", "b", "c"], upstream)
    assert cycle.path == ("a", "b")
    assert cycle.component == ("a", "b", "c")
    assert cycle.describe() == "a -> b -> a (also on cycles with these: c)"


def test_the_shortest_cycle_through_the_first_node_is_named() -> None:
    # a -> b -> c -> d -> a, plus the shortcut b -> a.
    upstream = {"b": ["a"], "c": ["b"], "d": ["c"], "a": ["d", "b"]}
    (cycle,) = find_cycles(["a", "b", "c", "d"], upstream)
    assert cycle.path == ("a", "b")


def test_self_loops_alone_are_not_cycles_here() -> None:
    assert find_cycles(["a"], {"a": ["a"]}) == []
    # A self-loop inside a larger cycle does not shorten it to one node.
    (cycle,) = find_cycles(["a", "b"], {"a": ["a", "b"], "b": ["a"]})
    assert cycle.path == ("a", "b")


def test_long_chains_and_cycles_need_no_recursion() -> None:
    count = 20_000
    nodes = [f"n{i}" for i in range(count)]
    upstream = {nodes[i]: [nodes[i - 1]] for i in range(1, count)}
    assert topological_order(nodes, upstream)[0] == nodes
    upstream[nodes[0]] = [nodes[-1]]
    (cycle,) = find_cycles(nodes, upstream)
    assert cycle.path == tuple(nodes)


def test_ancestry_is_transitive_and_strict() -> None:
    order = ["a", "b", "c", "d"]
    upstream = {"b": ["a"], "c": ["b"], "d": []}
    ancestry = Ancestry(order, upstream)
    assert ancestry.is_upstream("a", "c")
    assert not ancestry.is_upstream("c", "a")
    assert not ancestry.is_upstream("c", "c")
    assert not ancestry.is_upstream("a", "d")
    assert not ancestry.is_upstream("ghost", "c")
    assert ancestry.ancestors("c") == frozenset({"a", "b"})
    assert ancestry.ancestors("a") == frozenset()


def test_ancestry_of_nodes_outside_the_order_is_searched() -> None:
    upstream = {"x": ["y", "root"], "y": ["x"]}
    ancestry = Ancestry(["root"], upstream)
    assert ancestry.is_upstream("root", "x")
    assert ancestry.ancestors("y") == frozenset({"x", "y", "root"})


@pytest.mark.parametrize("width", [1, 3])
def test_ancestry_through_joins(width: int) -> None:
    roots = [f"r{i}" for i in range(width)]
    order = [*roots, "join", "tail"]
    upstream = {"join": roots, "tail": ["join"]}
    ancestry = Ancestry(order, upstream)
    assert ancestry.ancestors("tail") == frozenset({*roots, "join"})


def test_ancestry_ignores_edges_from_unknown_nodes() -> None:
    ancestry = Ancestry(["b"], {"b": ["ghost"]})
    assert ancestry.ancestors("b") == frozenset()
    assert not ancestry.is_upstream("ghost", "b")
