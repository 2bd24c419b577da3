"""`dag_analyze`: order, critical path and cycles of a dependency graph.

The one computation small models reliably get wrong by hand: Kahn's
algorithm gives the order, the longest weighted chain the critical path, and
a DFS over the nodes Kahn could not place names the cycles.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any

from msgspec import Meta

from legion.plugin import ToolError, tool

EDGE_EXAMPLE = '{"edges": [["design", "build"], ["build", "test"]], "durations": {"build": 3}}'


@tool(
    keywords=[
        "dag",
        "graph",
        "dependencies",
        "dependency",
        "topological",
        "sort",
        "order",
        "critical",
        "path",
        "cycle",
        "plan",
        "tasks",
        "project",
    ],
)
def dag_analyze(
    edges: list[list[str]],
    durations: dict[str, Annotated[float, Meta(ge=0)]] = {},  # noqa: B006 -- never mutated
) -> dict[str, Any]:
    """Analyse a dependency graph: execution order, critical path, cycles, roots and leaves.

    Each edge is a [from, to] pair meaning "from must finish before to starts".
    `durations` maps a node to its duration (default 1); a node named only in
    `durations` is a task with no dependencies. The critical path is the chain
    with the largest total duration: the shortest time the whole plan can
    take. Each cycle is listed closed, e.g. ["a", "b", "a"]; when there is a
    cycle, topological_order and critical_path are null.
    """
    nodes: dict[str, None] = {}  # insertion-ordered set: results follow the caller's order
    succ: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for i, edge in enumerate(edges):
        if len(edge) != 2 or not all(edge):
            raise ToolError(
                f"edge {i} is {edge!r}; each edge must be a [from, to] pair of node names",
                hint=f"e.g. {EDGE_EXAMPLE}",
            )
        a, b = edge
        nodes.setdefault(a)
        nodes.setdefault(b)
        if (a, b) not in seen:
            seen.add((a, b))
            succ.setdefault(a, []).append(b)
    for name in durations:
        nodes.setdefault(name)
    indeg = dict.fromkeys(nodes, 0)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, outs in succ.items():
        for b in outs:
            indeg[b] += 1
            preds[b].append(a)
    roots = [n for n in nodes if indeg[n] == 0]
    leaves = [n for n in nodes if not succ.get(n)]

    order: list[str] = []
    queue = deque(roots)
    remaining = dict(indeg)
    while queue:
        n = queue.popleft()
        order.append(n)
        for m in succ.get(n, ()):
            remaining[m] -= 1
            if remaining[m] == 0:
                queue.append(m)
    result: dict[str, Any] = {
        "nodes": len(nodes),
        "edges": len(seen),
        "cycles": [],
        "topological_order": None,
        "critical_path": None,
        "critical_length": None,
        "roots": roots,
        "leaves": leaves,
    }
    if len(order) < len(nodes):
        # Only nodes Kahn could not place can be on a cycle: search just those.
        stuck = [n for n in nodes if remaining[n] > 0]
        result["cycles"] = _cycles(stuck, succ, limit=10)
        return result

    finish: dict[str, float] = {}
    best_pred: dict[str, str | None] = {}
    for n in order:
        before = max(preds[n], key=lambda p: finish[p], default=None)
        finish[n] = durations.get(n, 1.0) + (finish[before] if before is not None else 0.0)
        best_pred[n] = before
    path: list[str] = []
    end: str | None = max(order, key=lambda n: finish[n], default=None)
    length = finish[end] if end is not None else 0.0
    while end is not None:
        path.append(end)
        end = best_pred[end]
    result.update(topological_order=order, critical_path=path[::-1], critical_length=length)
    return result


def _cycles(candidates: list[str], succ: dict[str, list[str]], limit: int) -> list[list[str]]:
    """Cycles found by one iterative DFS: each back edge closes one. Not every
    elementary cycle (there can be exponentially many), but every cyclic
    component yields at least one, in O(V+E)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(candidates, WHITE)
    found: list[list[str]] = []
    for start in candidates:
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        index = {start: 0}
        colour[start] = GREY
        while stack:
            node, i = stack[-1]
            outs = succ.get(node, [])
            if i < len(outs):
                stack[-1] = (node, i + 1)
                nxt = outs[i]
                if nxt not in colour:
                    continue  # placed by Kahn's pass: on no cycle
                if colour[nxt] == WHITE:
                    colour[nxt] = GREY
                    index[nxt] = len(path)
                    path.append(nxt)
                    stack.append((nxt, 0))
                elif colour[nxt] == GREY:
                    found.append([*path[index[nxt] :], nxt])
                    if len(found) >= limit:
                        return found
            else:
                colour[node] = BLACK
                stack.pop()
                path.pop()
                index.pop(node)
    return found
