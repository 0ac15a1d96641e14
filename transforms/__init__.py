"""synthcap's Beam transforms: the plugin. `pipeline/` composes these; nothing here imports `pipeline`.

The public names below are loaded on first use (PEP 562), so `import transforms.io.read` does not import every
stage (the mixer's statistics alone cost a second of start-up).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DEAD_LETTER_REASONS": ("transforms.accounting", "DEAD_LETTER_REASONS"),
    "DROP_REASONS": ("transforms.accounting", "DROP_REASONS"),
    "DeadLetter": ("transforms.accounting", "DeadLetter"),
    "Dropped": ("transforms.accounting", "Dropped"),
    "Summarize": ("transforms.accounting", "Summarize"),
    "reconcile": ("transforms.accounting", "reconcile"),
    "ConnectedComponents": ("transforms.dedup.components", "ConnectedComponents"),
    "ExactDedup": ("transforms.dedup.exact", "ExactDedup"),
    "MinHasher": ("transforms.dedup.minhash", "MinHasher"),
    "NearDedup": ("transforms.dedup.near", "NearDedup"),
    "Normalization": ("transforms.dedup.normalize", "Normalization"),
    "IdCollisions": ("transforms.dedup.rank", "IdCollisions"),
    "VerifyPairs": ("transforms.dedup.verify", "VerifyPairs"),
    "SCHEMA": ("transforms.document", "SCHEMA"),
    "Document": ("transforms.document", "Document"),
    "DocumentCoder": ("transforms.document", "DocumentCoder"),
    "Provenance": ("transforms.document", "Provenance"),
    "from_dolma": ("transforms.document", "from_dolma"),
    "from_table": ("transforms.document", "from_table"),
    "to_dolma": ("transforms.document", "to_dolma"),
    "to_table": ("transforms.document", "to_table"),
    "ReadCrawl": ("transforms.io.read", "ReadCrawl"),
    "MixConfig": ("transforms.mix.config", "MixConfig"),
    "load_mix_config": ("transforms.mix.config", "load"),
    "MixWithCeiling": ("transforms.mix.select", "MixWithCeiling"),
    "ReadClassified": ("transforms.mix.read", "ReadClassified"),
    "ClassifyDocuments": ("transforms.mix.read", "ClassifyDocuments"),
    "JoinRows": ("transforms.mix.rows", "JoinRows"),
    "WriteRows": ("transforms.mix.rows", "WriteRows"),
    "ReadAgain": ("transforms.io.read", "ReadAgain"),
    "RunInfo": ("transforms.provenance.lineage", "RunInfo"),
    "WriteProvenance": ("transforms.provenance.lineage", "WriteProvenance"),
    "MatchIndex": ("transforms.refresh.match", "MatchIndex"),
    "WriteSegment": ("transforms.refresh.match", "WriteSegment"),
    "TagProvenance": ("transforms.provenance.tag", "TagProvenance"),
    "estimate_share": ("transforms.score.estimate", "estimate_share"),
    "FastTextModelHandler": ("transforms.score.handler", "FastTextModelHandler"),
    "ScoreAILikelihood": ("transforms.score.handler", "ScoreAILikelihood"),
    "Detector": ("transforms.score.model", "Detector"),
    "BuildReference": ("transforms.score.reference", "BuildReference"),
    "ReadReference": ("transforms.score.reference", "ReadReference"),
    "conformal_pvalue": ("transforms.score.reference", "conformal_pvalue"),
    "ScoreAgainstReference": ("transforms.score.stage", "ScoreAgainstReference"),
    "WriteDocuments": ("transforms.io.write", "WriteDocuments"),
    "WriteJsonRecords": ("transforms.io.write", "WriteJsonRecords"),
    "WriteSharded": ("transforms.io.write", "WriteSharded"),
}

__all__ = [
    "DEAD_LETTER_REASONS", "DROP_REASONS", "DeadLetter", "Dropped", "Summarize", "reconcile",
    "SCHEMA", "Document", "DocumentCoder", "Provenance", "from_dolma", "from_table", "to_dolma", "to_table",
    "ReadCrawl", "ReadAgain", "WriteDocuments", "WriteJsonRecords", "WriteSharded",
    "ConnectedComponents", "ExactDedup", "IdCollisions", "MinHasher", "NearDedup", "Normalization", "VerifyPairs",
    "RunInfo", "TagProvenance", "WriteProvenance",
    "Detector", "FastTextModelHandler", "ScoreAILikelihood", "ScoreAgainstReference", "BuildReference",
    "ReadReference", "conformal_pvalue", "estimate_share",
    "MixConfig", "MixWithCeiling", "ReadClassified", "ClassifyDocuments", "JoinRows", "WriteRows", "load_mix_config",
    "MatchIndex", "WriteSegment",
]


def __getattr__(name: str):
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
