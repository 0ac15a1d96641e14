"""Scheduled refreshes: an append-only dedup index of earlier crawls, matched with CoGroupByKey."""
