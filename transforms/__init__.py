"""synthcap's Beam transforms: the plugin. `pipeline/` composes these; nothing here imports `pipeline`."""
from transforms.accounting import DEAD_LETTER_REASONS, DROP_REASONS, DeadLetter, Dropped, Summarize, reconcile
from transforms.dedup.components import ConnectedComponents
from transforms.dedup.exact import ExactDedup
from transforms.dedup.minhash import MinHasher
from transforms.dedup.near import NearDedup
from transforms.dedup.normalize import Normalization
from transforms.dedup.rank import IdCollisions
from transforms.dedup.verify import VerifyPairs
from transforms.document import SCHEMA, Document, DocumentCoder, Provenance, from_dolma, from_table, to_dolma, to_table
from transforms.io.read import ReadCrawl
from transforms.mix.config import MixConfig
from transforms.mix.config import load as load_mix_config
from transforms.mix.select import MixWithCeiling
from transforms.provenance.lineage import RunInfo, WriteProvenance
from transforms.refresh.match import MatchIndex, WriteSegment
from transforms.provenance.tag import TagProvenance
from transforms.score.estimate import estimate_share
from transforms.score.handler import FastTextModelHandler, ScoreAILikelihood
from transforms.score.model import Detector
from transforms.score.reference import BuildReference, ReadReference, conformal_pvalue
from transforms.score.stage import ScoreAgainstReference
from transforms.io.write import WriteDocuments, WriteJsonRecords, WriteSharded

__all__ = [
    "DEAD_LETTER_REASONS", "DROP_REASONS", "DeadLetter", "Dropped", "Summarize", "reconcile",
    "SCHEMA", "Document", "DocumentCoder", "Provenance", "from_dolma", "from_table", "to_dolma", "to_table",
    "ReadCrawl", "WriteDocuments", "WriteJsonRecords", "WriteSharded",
    "ConnectedComponents", "ExactDedup", "IdCollisions", "MinHasher", "NearDedup", "Normalization", "VerifyPairs",
    "RunInfo", "TagProvenance", "WriteProvenance",
    "Detector", "FastTextModelHandler", "ScoreAILikelihood", "ScoreAgainstReference", "BuildReference",
    "ReadReference", "conformal_pvalue", "estimate_share",
    "MixConfig", "MixWithCeiling", "load_mix_config",
    "MatchIndex", "WriteSegment",
]
