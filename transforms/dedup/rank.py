"""Who survives a duplicate cluster: the copy seen first (earliest capture date), then the smallest id."""
from __future__ import annotations

from transforms.document import Document

UNDATED = "~"  # sorts after every ISO date: undated copies lose to dated ones


def rank(doc: Document) -> str:
    return f"{doc.first_seen or doc.capture_date or UNDATED}\x00{doc.id}"


def id_of(rank_key: str) -> str:
    return rank_key.split("\x00", 1)[1]
