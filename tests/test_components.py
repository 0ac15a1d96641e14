"""Beam connected components against a local union-find: chains, stars, cliques, random graphs, any round count."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.runner import make_pipeline
from transforms.dedup.components import ConnectedComponents
from apache_beam.options.pipeline_options import PipelineOptions


def reference(edges):
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for u, v in edges:
        a, b = find(u), find(v)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return sorted((x, find(x)) for x in {n for e in edges for n in e})


def run(edges, rounds):
    with make_pipeline(PipelineOptions([])) as p:
        labels = p | beam.Create(edges) | ConnectedComponents(rounds=rounds)
        assert_that(labels, equal_to(reference(edges)))


def chain(n, offset=0):
    return [(f"n{offset + i:05d}", f"n{offset + i + 1:05d}") for i in range(n - 1)]


@pytest.mark.parametrize("rounds", [0, 1, 3, 6])
def test_chains_stars_and_cliques(rounds):
    edges = chain(300)
    edges += [(f"s{0:04d}", f"s{i:04d}") for i in range(1, 200)]  # star
    edges += [(f"c{i}", f"c{j}") for i in range(12) for j in range(i + 1, 12)]  # clique
    edges += [(f"z{300 - i:04d}", f"z{299 - i:04d}") for i in range(299)]  # chain numbered backwards
    run(edges, rounds)


@pytest.mark.slow  # a property over a dozen pipelines
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=120),
       st.integers(0, 4))
def test_random_graphs_match_union_find(pairs, rounds):
    run([(f"{u:03d}", f"{v:03d}") for u, v in pairs if u != v] or [("000", "001")], rounds)
