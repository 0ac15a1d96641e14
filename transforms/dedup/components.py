"""Connected components in Beam without a single-worker graph.

A fixed number of unrolled rounds of large-star and small-star (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014) shrinks every component towards a star on its minimum node; both operations
preserve connectivity. What is not a star by then is finished exactly by a union-find over the residual: after the
rounds, a node with exactly one neighbour, smaller than itself, is a leaf of that neighbour; every other edge has a
non-leaf as its larger end, and those edges (the residual) are all that the union-find sees. The residual is small
(it is exported as the `cc_residual_edges` counter) and bounded by `max_residual_edges`: above it the run fails
with a clear message instead of gathering a large graph on one worker.
"""
from __future__ import annotations

import apache_beam as beam

from transforms.accounting import count


class ResidualTooLarge(RuntimeError):
    pass


def _both_ways(edge):
    u, v = edge
    return [(u, v), (v, u)]


def _large_star(kv):
    u, neighbours = kv
    ns = set(neighbours)
    m = min(min(ns), u)
    return [(v, m) for v in ns if v > u]


def _small_star(kv):
    u, neighbours = kv
    lower = {v for v in neighbours if v <= u}
    if not lower:
        return []
    m = min(lower)
    return [(v, m) for v in lower | {u} if v != m]


def _round(edges, label: str, fn):
    return (
        edges
        | f"{label}Both" >> beam.FlatMap(_both_ways)
        | f"{label}Group" >> beam.GroupByKey()
        | f"{label}Star" >> beam.FlatMap(fn)
    )


class _Classify(beam.DoFn):
    """Leaves (one smaller neighbour) point at their parent; other nodes put their downward edges in the residual."""

    RESIDUAL = "residual"

    def process(self, kv):
        v, neighbours = kv
        ns = set(neighbours)
        lower = [w for w in ns if w < v]
        if not lower:
            yield v, None  # a centre: its own label unless the residual merges it
        elif len(ns) == 1:
            yield v, lower[0]
        else:
            yield v, None
            for w in lower:
                count("cc_residual_edges")
                yield beam.pvalue.TaggedOutput(self.RESIDUAL, (w, v))


class _UnionFind(beam.CombineFn):
    def __init__(self, max_edges: int):
        self._max = max_edges

    def create_accumulator(self):
        return []

    def _check(self, edges: list) -> list:
        if len(edges) > self._max:
            raise ResidualTooLarge(f"connected components left more than {self._max} residual edges; raise "
                                   f"--cc_rounds or --max_residual_edges")
        return edges

    def add_input(self, acc, edge):
        acc.append(edge)
        return self._check(acc)

    def merge_accumulators(self, accs):
        return self._check([e for a in accs for e in a])

    def extract_output(self, edges):
        parent: dict = {}

        def find(x):
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while parent.get(x, x) != root:
                parent[x], x = root, parent[x]
            return root

        for u, v in sorted(edges):
            ru, rv = find(u), find(v)
            if ru != rv:
                lo, hi = (ru, rv) if ru < rv else (rv, ru)
                parent[hi] = lo
        return {x: find(x) for e in edges for x in e}


def _label(kv, roots):
    v, parent = kv
    node = v if parent is None else parent
    return v, roots.get(node, node)


class ConnectedComponents(beam.PTransform):
    """(u, v) edges between comparable node ids -> (node, smallest node of its component) for every node."""

    def __init__(self, rounds: int = 6, max_residual_edges: int = 1_000_000):
        super().__init__()
        self._rounds = rounds
        self._max = max_residual_edges

    def expand(self, edges):
        e = edges | "Orient" >> beam.FlatMap(lambda uv: [] if uv[0] == uv[1] else [tuple(sorted(uv))])
        for r in range(self._rounds):
            e = _round(e, f"Large{r}", _large_star)
            e = _round(e, f"Small{r}", _small_star)
        classified = (
            e
            | "FinalBoth" >> beam.FlatMap(_both_ways)
            | "FinalGroup" >> beam.GroupByKey()
            | "Classify" >> beam.ParDo(_Classify()).with_outputs(_Classify.RESIDUAL, main="nodes")
        )
        roots = classified[_Classify.RESIDUAL] | "UnionFind" >> beam.CombineGlobally(_UnionFind(self._max))
        return classified["nodes"] | "Label" >> beam.Map(_label, beam.pvalue.AsSingleton(roots))
