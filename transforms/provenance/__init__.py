"""Provenance: where each document came from (lineage) and what the page itself declares (signals)."""
