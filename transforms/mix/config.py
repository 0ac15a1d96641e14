"""The mix config (YAML): parsed and validated up front; every error names the key and what is allowed.

    seed: 7
    target_tokens: 200000          # or target_documents
    max_synthetic_fraction: "1/10" # exact: a decimal or a fraction string
    synthetic: {rule: threshold, threshold: 0.9}   # or {rule: expected}
    exclude: {opt_out: true, languages: [], domains: [], min_tokens: 0}
    sources:
      - {name: human-2022, inputs: ["curated-2022/documents/*.parquet"], anchor: true}
      - {name: web-2024, inputs: ["curated-2024/documents/*.parquet"], weight: 1, max_repeats: 1}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

import yaml

from transforms.io.files import read_bytes


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    name: str
    inputs: tuple[str, ...]
    weight: Optional[Fraction] = None
    tokens: Optional[int] = None
    anchor: bool = False
    max_repeats: int = 1


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
    rule: str  # "threshold" | "expected"
    threshold: float
    exclude: Exclude
    sources: tuple[Source, ...]
    raw: dict = field(default_factory=dict, compare=False, hash=False)


def _exact(value: Any, key: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key}: expected a number or a string such as \"0.1\" or \"1/20\", got {value!r}")
    try:
        x = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{key}: {value!r} is not a decimal or fraction such as \"0.1\" or \"1/20\"") from None
    return x


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key; allowed: {', '.join(sorted(allowed))}")


def _int(obj: dict, key: str, where: str, minimum: int = 0, default=None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}{key}: expected an integer >= {minimum}, got {value!r}")
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
    _check_keys(obj, {"seed", "target_tokens", "target_documents", "max_synthetic_fraction", "synthetic", "exclude",
                      "sources"}, "")
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
    syn = obj.get("synthetic", {"rule": "threshold"})
    if not isinstance(syn, dict):
        raise ConfigError("synthetic: expected a mapping with rule: threshold | expected")
    _check_keys(syn, {"rule", "threshold"}, "synthetic.")
    rule = syn.get("rule", "threshold")
    if rule not in ("threshold", "expected"):
        raise ConfigError(f"synthetic.rule: {rule!r} is not allowed; allowed: threshold, expected")
    threshold = syn.get("threshold", 0.5)
    if rule == "expected" and "threshold" in syn:
        raise ConfigError("synthetic.threshold: only with rule: threshold")
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
    sources, names = [], set()
    for i, s in enumerate(raw_sources):
        where = f"sources[{i}]."
        if not isinstance(s, dict):
            raise ConfigError(f"sources[{i}]: expected a mapping with name and inputs")
        _check_keys(s, {"name", "inputs", "weight", "tokens", "anchor", "max_repeats"}, where)
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}name: required, a non-empty string")
        if name in names:
            raise ConfigError(f"{where}name: {name!r} is used twice")
        names.add(name)
        inputs = _strings(s, "inputs", where)
        if not inputs:
            raise ConfigError(f"{where}inputs: required, a list of Parquet globs")
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
        repeats = _int(s, "max_repeats", where, minimum=1, default=1)
        sources.append(Source(name, inputs, weight, tokens, anchor, repeats))
    return MixConfig(seed, unit, target, ceiling, rule, float(threshold), exclude, tuple(sources), raw=obj)


def load(path: str) -> MixConfig:
    try:
        obj = yaml.safe_load(read_bytes(path))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    return parse(obj)
