"""The mix config (YAML): parsed and validated up front; every error names the key and what is allowed.

    seed: 7
    target_tokens: 200000          # or target_documents
    max_synthetic_fraction: "1/10" # exact: a decimal or a fraction string
    synthetic: {rule: certified}   # default; opt-in rule counts: {rule: threshold, threshold: 0.9} / {rule: expected}
    unestimable: drop              # certified only: drop | treat_as_synthetic | fail
    pre_llm_is_human: true         # certified only: pages captured before 2022-11-30 count as human
    exclude: {opt_out: true, languages: [], domains: [], min_tokens: 0}
    sources:
      - {name: human-2022, curated: ["curated-2022"], anchor: true}   # curated output folders (documents + summary)
      - {name: web-2024, inputs: ["other/*.parquet"], weight: 1, max_repeats: 1}  # or Parquet globs

The YAML is read through Beam's FileSystems (local or gs://) with a loader that refuses duplicate keys and aliases
that expand beyond a small bound (an alias bomb is refused before it grows).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

import yaml
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.io.files import not_regular

RULES = ("certified", "threshold", "expected")
UNESTIMABLE = ("drop", "treat_as_synthetic", "fail")
MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000  # YAML nodes after alias expansion
# Epochs of one document. Past ~16, repeats add almost nothing (Muennighoff et al. 2023); the cap only keeps a
# mistyped value from writing without end (10**21 copies of each document).
MAX_REPEATS = 1000


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    name: str
    inputs: tuple[str, ...]  # Parquet globs (for curated folders: FOLDER/documents/*.parquet)
    weight: Optional[Fraction] = None
    tokens: Optional[int] = None
    anchor: bool = False
    max_repeats: int = 1
    curated: tuple[str, ...] = ()  # curated output folders whose summary.json carries the AI-share estimates


@dataclass(frozen=True)
class Exclude:
    opt_out: bool = True
    languages: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    min_tokens: int = 0


@dataclass(frozen=True)
class MixConfig:
    seed: int
    unit: str  # "tokens" | "documents"
    target: int
    ceiling: Fraction
    rule: str  # "certified" | "threshold" | "expected"
    threshold: float
    unestimable: str
    exclude: Exclude
    sources: tuple[Source, ...]
    pre_llm_is_human: bool = True
    raw: dict = field(default_factory=dict, compare=False, hash=False)


MAX_NUMBER_CHARS = 40  # an exact ceiling or weight is a few digits; Fraction("1e-999999999") would compute 10**1e9
_EXPONENT = re.compile(r"[eE]([+-]?\d+)")


def _exact(value: Any, key: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key}: expected a number or a string such as \"0.1\" or \"1/20\", got {value!r}")
    try:
        text = str(value).strip()
    except ValueError:  # an int of more digits than Python converts
        text = None
    exponent = _EXPONENT.search(text or "")
    if text is None or len(text) > MAX_NUMBER_CHARS or (exponent and abs(int(exponent.group(1))) > MAX_NUMBER_CHARS):
        shown = "a number of over 4,300 digits" if text is None else (
            repr(value) if len(text) <= MAX_NUMBER_CHARS else f"{text[:20]!r}... ({len(text):,} characters)")
        raise ConfigError(f"{key}: {shown} is too long or too fine; give a decimal or fraction such as \"0.1\" or "
                          f"\"1/20\" (at most {MAX_NUMBER_CHARS} characters, exponent at most {MAX_NUMBER_CHARS})")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}: {value!r} is not a decimal or fraction such as \"0.1\" or \"1/20\"") from None


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    # YAML keys need not be strings (`1:`, `~:`, `2024-01-01:`): sorted by their text, never compared as values
    unknown = sorted(set(obj) - allowed, key=lambda k: (not isinstance(k, str), str(k)))
    if unknown:
        key = unknown[0] if isinstance(unknown[0], str) else yaml.safe_dump(unknown[0]).splitlines()[0]
        raise ConfigError(f"{where}{key}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _int(obj: dict, key: str, where: str, minimum: int = 0, default=None, maximum: Optional[int] = None) -> int:
    if key not in obj and default is None:
        raise ConfigError(f"{where}{key}: required (an integer >= {minimum})")
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}{key}: expected an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}{key}: at most {maximum:,}, got {value:,}")
    return value


def _strings(obj: dict, key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse(obj: Any) -> MixConfig:
    if not isinstance(obj, dict):
        raise ConfigError("the mix config must be a mapping of keys to values")
    _check_keys(obj, {"seed", "target_tokens", "target_documents", "max_synthetic_fraction", "synthetic", "unestimable",
                      "pre_llm_is_human", "exclude", "sources"}, "")
    seed = _int(obj, "seed", "", minimum=0)
    targets = [k for k in ("target_tokens", "target_documents") if k in obj]
    if len(targets) != 1:
        raise ConfigError("target_tokens / target_documents: give exactly one of them")
    unit = "tokens" if targets[0] == "target_tokens" else "documents"
    target = _int(obj, targets[0], "", minimum=1)
    if "max_synthetic_fraction" not in obj:
        raise ConfigError("max_synthetic_fraction: required (e.g. \"0.1\" or \"1/20\")")
    ceiling = _exact(obj["max_synthetic_fraction"], "max_synthetic_fraction")
    if not 0 <= ceiling <= 1:
        raise ConfigError(f"max_synthetic_fraction: must be between 0 and 1, got {obj['max_synthetic_fraction']!r}")
    syn = obj.get("synthetic", {"rule": "certified"})
    if not isinstance(syn, dict):
        raise ConfigError("synthetic: expected a mapping with rule: certified | threshold | expected")
    _check_keys(syn, {"rule", "threshold"}, "synthetic.")
    rule = syn.get("rule", "certified")
    if rule not in RULES:
        raise ConfigError(f"synthetic.rule: {rule!r} is not allowed; allowed: {', '.join(RULES)}")
    threshold = syn.get("threshold", 0.5)
    if rule != "threshold" and "threshold" in syn:
        raise ConfigError("synthetic.threshold: only with rule: threshold")
    unestimable = obj.get("unestimable", "drop")
    if "unestimable" in obj and rule != "certified":
        raise ConfigError("unestimable: only with synthetic.rule: certified")
    if unestimable not in UNESTIMABLE:
        raise ConfigError(f"unestimable: {unestimable!r} is not allowed; allowed: {', '.join(UNESTIMABLE)}")
    pre_llm_is_human = obj.get("pre_llm_is_human", True)
    if "pre_llm_is_human" in obj and rule != "certified":
        raise ConfigError("pre_llm_is_human: only with synthetic.rule: certified")
    if not isinstance(pre_llm_is_human, bool):
        raise ConfigError(f"pre_llm_is_human: expected true or false, got {pre_llm_is_human!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"synthetic.threshold: expected a number in [0, 1], got {threshold!r}")
    ex = obj.get("exclude", {})
    if not isinstance(ex, dict):
        raise ConfigError("exclude: expected a mapping")
    _check_keys(ex, {"opt_out", "languages", "domains", "min_tokens"}, "exclude.")
    if not isinstance(ex.get("opt_out", True), bool):
        raise ConfigError(f"exclude.opt_out: expected true or false, got {ex.get('opt_out')!r}")
    exclude = Exclude(ex.get("opt_out", True), _strings(ex, "languages", "exclude."),
                      _strings(ex, "domains", "exclude."), _int(ex, "min_tokens", "exclude.", default=0))
    raw_sources = obj.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise ConfigError("sources: expected a non-empty list of sources")
    sources, names, seen = [], set(), {}
    for i, s in enumerate(raw_sources):
        where = f"sources[{i}]."
        if not isinstance(s, dict):
            raise ConfigError(f"sources[{i}]: expected a mapping with name and inputs")
        _check_keys(s, {"name", "inputs", "curated", "weight", "tokens", "anchor", "max_repeats"}, where)
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}name: required, a non-empty string")
        if name in names:
            raise ConfigError(f"{where}name: {name!r} is used twice")
        names.add(name)
        if ("inputs" in s) == ("curated" in s):
            raise ConfigError(f"{where}inputs / curated: give exactly one of them (Parquet globs or curated folders)")
        curated = tuple(c.rstrip("/") for c in _strings(s, "curated", where))
        inputs = _strings(s, "inputs", where) or tuple(FileSystems.join(c, "documents", "*.parquet") for c in curated)
        if not inputs:
            raise ConfigError(f"{where}{'curated' if 'curated' in s else 'inputs'}: required, a non-empty list")
        for path in inputs:
            if path in seen:
                raise ConfigError(f"{where}inputs: {path!r} is already an input of source {seen[path]!r}; a document "
                                  f"may enter a mix through one source only")
            seen[path] = name
        anchor = s.get("anchor", False)
        if not isinstance(anchor, bool):
            raise ConfigError(f"{where}anchor: expected true or false, got {anchor!r}")
        if anchor and ("weight" in s or "tokens" in s):
            raise ConfigError(f"{where}anchor: an anchor source is included whole; drop its weight / tokens")
        if not anchor and ("weight" in s) == ("tokens" in s):
            raise ConfigError(f"{where}weight / tokens: give exactly one of them (or anchor: true)")
        weight = _exact(s["weight"], f"{where}weight") if "weight" in s else None
        if weight is not None and weight <= 0:
            raise ConfigError(f"{where}weight: must be positive, got {s['weight']!r}")
        if "tokens" in s and unit != "tokens":
            raise ConfigError(f"{where}tokens: a token budget needs target_tokens (use weight with target_documents)")
        tokens = _int(s, "tokens", where, minimum=1) if "tokens" in s else None
        repeats = _int(s, "max_repeats", where, minimum=1, default=1, maximum=MAX_REPEATS)
        sources.append(Source(name, inputs, weight, tokens, anchor, repeats, curated))
    return MixConfig(seed, unit, target, ceiling, rule, float(threshold), unestimable, exclude, tuple(sources),
                     pre_llm_is_human, raw=obj)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and counts nodes through aliases before anything is constructed."""

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in keys
            except TypeError:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar") from None
            if seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {str(key)[:60]!r}")
            keys.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(root) -> None:
    """Nodes of the document once every alias is expanded (memoised per node, so the walk stays linear in the file)."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for kv in node.value for n in kv]
        if done:
            visiting.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_NODES:
                raise ConfigError(f"more than {MAX_NODES:,} values once YAML aliases are expanded (an alias bomb?)")
            continue
        if key in visiting:
            raise ConfigError("a YAML alias refers to itself (recursive structure)")
        visiting.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def load(path: str) -> MixConfig:
    """Reads the config through Beam's FileSystems (local, gs://, any registered scheme)."""
    problem = not_regular(path)
    if problem:  # a named pipe would block the launch for ever
        raise ConfigError(problem)
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except Exception as e:  # FileSystems wraps every scheme's errors differently (IOError, BeamIOError, ...)
        raise ConfigError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; a mix config is a few lines")
    try:
        obj = yaml.load(data.decode("utf-8"), Loader=_StrictLoader)
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path} nests too deeply") from None
    except ConfigError:
        raise
    except ValueError as e:  # a scalar YAML resolves but cannot build: 2024-13-45 as a date, an int over 4300 digits
        raise ConfigError(f"{path} holds a value that cannot be read: {str(e).splitlines()[0][:120]}") from None
    return parse(obj)
