"""Training and honest evaluation of the fastText detector.

Splits are by group: texts sharing a `pair_id` (an AI continuation of a human prefix) or an exact text (human
strings repeat across sets) are in one group, and a group never straddles train / validation / test. `mixed`
texts (human text edited by a model or the reverse) are left out of training and of the metrics: they are
neither label. Calibration (Platt) and the default threshold are fitted on validation only.
"""
from __future__ import annotations

import ctypes
import gzip
import hashlib
import heapq
import importlib
import json
import os
import tempfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import xxhash

from transforms.io.files import distinct
from transforms.score.calibration import Platt
from transforms.score.estimate import LODO_MIN_DATASETS
from transforms.score.language import SUPPORTED, declared_language
from transforms.score.model import AI_LABEL, CARD_FILE, MODEL_FILE, sha256_file
from transforms.score.normalize import for_scoring

DEFAULT_PARAMS = {"epoch": 5, "lr": 0.5, "wordNgrams": 2, "minn": 0, "maxn": 0, "dim": 64, "bucket": 500_000,
                  "loss": "softmax"}
SEARCH = [
    {"wordNgrams": 2, "minn": 0, "maxn": 0},
    {"wordNgrams": 1, "minn": 3, "maxn": 5},
    {"wordNgrams": 2, "minn": 3, "maxn": 5},
]

ADAPT_SEARCH = [{"wordNgrams": 2, "minn": 3, "maxn": 5}]  # the shipped model's choice: no search when adapting
REFERENCE_WEIGHT = 10  # the research notes' measured best of 0 / 10 / 30 on held-out domains


@dataclass
class Example:
    text: str
    label: int  # 1 = ai, 0 = human
    dataset: str
    domain: str
    generator: str
    group: str
    weight: int = 1  # lines in the training file: how domain-adaptation up-weights the human reference


MAX_LINE_CHARS = 16 << 20  # one labelled text per line: a line longer than this is refused, never read whole


def load(paths: Iterable[str], limit_per_file: int | None = None, seed: int = 1,
         skipped: Counter | None = None) -> list[Example]:
    """Labelled English human / AI texts of every file; ValueError (one line naming the file and line) for a file
    that is not JSON Lines in gzip: a folder, plain JSON Lines, damaged gzip, a line that is not a JSON object.
    With `limit_per_file`, a file gives the records with the smallest keyed hashes of (seed, file, id): a sample
    spread over the whole file, whose first lines are often one label or one domain (comnets_courses' first 2,000
    texts are all AI), in file order. `skipped` counts the records left out, by why (none goes unsaid)."""
    out, skipped = [], Counter() if skipped is None else skipped
    for path in distinct(paths):  # a file named twice (`d/a.jsonl.gz`, `./d/a.jsonl.gz`) is read once
        dataset = os.path.basename(path).split(".")[0]
        try:
            out += _load_file(path, dataset, limit_per_file, seed, skipped)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
            raise ValueError(f"--data: {path} is not readable JSON Lines in gzip ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'})") from None
    return out


def _load_file(path: str, dataset: str, limit_per_file: int | None, seed: int, skipped: Counter) -> list[Example]:
    out = []
    kept = []  # with a limit: a max-heap by key (keys negated) of the `limit_per_file` smallest keys seen so far
    with gzip.open(path, "rt", encoding="utf-8-sig") as f:  # a byte-order mark is skipped, as curate skips it
        for line_no, line in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 1), "")):
            if len(line) > MAX_LINE_CHARS:  # a line is never held whole past the cap (a gzip bomb has no newline)
                raise ValueError(f"--data: {path} line {line_no + 1}: longer than {MAX_LINE_CHARS:,} characters")
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except RecursionError:
                raise ValueError(f"--data: {path} line {line_no + 1}: JSON nested too deep to parse") from None
            except ValueError as e:
                raise ValueError(f"--data: {path} line {line_no + 1}: not JSON ({e})") from None
            if not isinstance(r, dict) or not isinstance(r.get("text") or "", str):
                raise ValueError(f"--data: {path} line {line_no + 1}: expected a JSON object with a string `text`")
            text = (r.get("text") or "").strip()
            why = ("label is not human or ai" if r.get("label") not in ("human", "ai") else
                   "not English" if r.get("language") and declared_language(r["language"]) not in SUPPORTED
                   else "empty text" if not text else None)
            if why:
                skipped[why] += 1
                continue
            example = Example(text, int(r["label"] == "ai"), dataset, str(r.get("domain") or "?"),
                              str(r.get("generator") or "human"),
                              f"{dataset}:{r['pair_id']}" if r.get("pair_id") is not None else "")
            if not limit_per_file:
                out.append(example)
                continue
            key = xxhash.xxh64_intdigest(f"{seed}\x00{dataset}\x00{r.get('id', line_no)}".encode())
            item = (-key, -line_no, example)
            if len(kept) < limit_per_file:
                heapq.heappush(kept, item)
            elif item[:2] > kept[0][:2]:
                heapq.heapreplace(kept, item)
    return out if not limit_per_file else [e for _, _, e in sorted(kept, key=lambda t: -t[1])]


def assign_groups(examples: list[Example]) -> list[str]:
    """Union of pair ids and exact texts: the unit that must not straddle splits."""
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = []
    for e in examples:
        t = "t:" + hashlib.sha1(e.text.encode()).hexdigest()
        if e.group:
            a, b = find(t), find("p:" + e.group)
            if a != b:
                parent[max(a, b)] = min(a, b)
        keys.append(t)
    return [find(k) for k in keys]


def split(examples: list[Example], seed: int, fractions=(0.8, 0.1)) -> dict[str, list[Example]]:
    groups = assign_groups(examples)
    out = {"train": [], "validation": [], "test": []}
    for e, g in zip(examples, groups):
        u = int(hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()[:12], 16) / 16**12
        out["train" if u < fractions[0] else "validation" if u < sum(fractions) else "test"].append(e)
    return out


def _write_train_file(examples: list[Example], path: str) -> None:
    with open(path, "w") as f:
        for e in examples:
            f.write(f"{AI_LABEL if e.label else '__label__human'} {for_scoring(e.text)}\n" * e.weight)


class _ZeroedHeap:
    """fastText 0.9.3 reads heap memory it never initialised: a model trained in a process whose heap has been used
    (a second training, scipy or py3langid loaded) can meet garbage and stop with "Encountered NaN". While training,
    glibc is told to hand out zero-filled blocks (mallopt M_PERTURB 255, what MALLOC_PERTURB_=255 does), so
    training sees what a fresh heap holds. A no-op where glibc is absent."""

    M_PERTURB = -6

    def __enter__(self):
        try:
            self._libc = ctypes.CDLL("libc.so.6")
            self._libc.mallopt(self.M_PERTURB, 255)
        except (OSError, AttributeError):
            self._libc = None
        return self

    def __exit__(self, *exc):
        if self._libc is not None:
            self._libc.mallopt(self.M_PERTURB, 0)


def fit(examples: list[Example], params: dict, seed: int, threads: int = 2):
    import fasttext

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.txt")
        _write_train_file(examples, path)
        with _ZeroedHeap():
            model = fasttext.train_supervised(input=path, seed=seed, thread=threads, verbose=0, **params)
    return model


def raw_scores(model, texts: list[str]) -> np.ndarray:
    labels, probs = model.predict([for_scoring(t) for t in texts], k=2)
    return np.array([p[list(ls).index(AI_LABEL)] if AI_LABEL in ls else 1.0 - p[0] for ls, p in zip(labels, probs)])


def auroc(scores, labels) -> float | None:
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return None
    ranks = np.empty(len(s))
    order = np.argsort(s, kind="stable")
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # average ranks of ties
        idx = s == v
        ranks[idx] = ranks[idx].mean()
    return float((ranks[y == 1].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def tpr_at_fpr(scores, labels, fpr: float) -> float | None:
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    if not (y == 1).any() or not (y == 0).any():
        return None
    thr = np.quantile(s[y == 0], 1 - fpr, method="higher")
    return float((s[y == 1] > thr).mean())


def metrics(scores, labels, threshold: float | None = None) -> dict:
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    out = {"n": int(len(y)), "ai": int(y.sum()), "human": int((y == 0).sum()), "auroc": auroc(s, y),
           "tpr_at_1pct_fpr": tpr_at_fpr(s, y, 0.01), "tpr_at_5pct_fpr": tpr_at_fpr(s, y, 0.05)}
    if threshold is not None:
        out["flagged_human_at_threshold"] = float((s[y == 0] >= threshold).mean()) if (y == 0).any() else None
        out["flagged_ai_at_threshold"] = float((s[y == 1] >= threshold).mean()) if (y == 1).any() else None
    return out


def breakdown(examples: list[Example], scores, key) -> dict:
    """Per-key metrics; a key with only AI texts is scored against every human text of the same split."""
    humans = [(s, 0) for e, s in zip(examples, scores) if e.label == 0]
    by = defaultdict(list)
    for e, s in zip(examples, scores):
        by[key(e)].append((s, e.label))
    out = {}
    for k, rows in sorted(by.items()):
        if not any(lbl == 0 for _, lbl in rows):
            rows = rows + humans
        if any(lbl == 1 for _, lbl in rows):
            out[k] = metrics([s for s, _ in rows], [lbl for _, lbl in rows])
    return out


@dataclass
class Reference:
    """A human reference for domain adaptation: the documents trained on (as human examples, each `weight` times)
    and the held-out ones the card's in-domain figures come from; `split` says which is which (see
    `transforms.score.reference.trained_on`), so that scoring never calibrates against a training document."""

    train: list[str]
    held_out: list[str]
    weight: int
    split: dict
    patterns: list[str]


def load_reference(patterns: list[str], seed: int, weight: int, train_fraction: float = 0.5) -> Reference:
    """Curated Parquet files (local or gs://, through Beam FileSystems) split by a keyed hash of each record."""
    import io

    import pyarrow.parquet as pq

    from transforms.io.commit import CommittedFileChanged, output_root, read_committed, require_complete
    from transforms.io.files import read_bytes
    from transforms.score.reference import is_curated, match_reference, trained_on

    split_rule = {"seed": seed, "train_fraction": train_fraction}
    train, held = [], []
    for path in match_reference(patterns):  # each file once, however many globs reach it
        if not is_curated(path):
            raise ValueError(f"--human_reference: {path} is not curated Parquet; train-detector splits the "
                             "reference by curated record keys: run synthcap curate on it and pass "
                             "OUT/documents/*.parquet")
        root = output_root(path)
        try:  # read whole anyway: a synthcap output's file is checked against its completion record
            data = (read_committed(root, path[len(root) + 1:], require_complete(root)) if root
                    else read_bytes(path))
        except CommittedFileChanged as e:
            raise ValueError(f"--human_reference: {e}") from None
        table = pq.read_table(io.BytesIO(data), columns=["id", "text", "source", "offset"])
        for row in table.to_pylist():
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                continue
            key = (row["id"], row["source"], row["offset"])
            (train if trained_on(key, split_rule) else held).append(row["text"])
    if len(train) < 10 or len(held) < 10:
        raise ValueError(f"--human_reference: {len(train) + len(held)} documents; at least 20 are needed")
    return Reference(train, held, weight, split_rule, list(patterns))


def train_detector(paths: list[str], out_dir: str, seed: int = 1, lodo: bool = True, name: str = "synthcap-fasttext",
                   limit_per_file: int | None = None, search: list[dict] | None = None, log=print,
                   reference: Reference | None = None) -> dict:
    """Trains, calibrates, evaluates (in-domain and leave-one-dataset-out) and writes model.ftz + model_card.json.
    With a `reference`, its training half joins the training split as weighted human examples (domain
    adaptation); calibration and evaluation stay on the labelled data and the reference's held-out half."""
    importlib.import_module("fasttext")  # fail early with a clear import error

    skipped = Counter()
    examples = load(paths, limit_per_file, seed, skipped)
    if not examples:
        raise ValueError("no labelled human/ai English texts in the given files")
    parts = split(examples, seed)
    for name_ in ("train", "validation"):  # fitting, AUROC, calibration and the threshold need both labels
        ai = sum(e.label for e in parts[name_])
        if not ai or ai == len(parts[name_]):
            counts = ", ".join(f"{k} {sum(e.label for e in v)} ai / {len(v) - sum(e.label for e in v)} human"
                               for k, v in parts.items())
            raise ValueError(f"--data: the {name_} split needs both human and ai texts ({counts}); give more "
                             "labelled texts of each label")
    if reference is not None:
        parts["train"] = parts["train"] + [Example(t, 0, "reference", "reference", "human", "", reference.weight)
                                           for t in reference.train]
    best, best_auc = None, -1.0
    for overrides in search if search is not None else SEARCH:
        params = {**DEFAULT_PARAMS, **overrides}
        model = fit(parts["train"], params, seed)
        auc = auroc(raw_scores(model, [e.text for e in parts["validation"]]), [e.label for e in parts["validation"]])
        log(f"  params {overrides}: validation AUROC {auc:.4f}")
        if auc > best_auc:
            best, best_auc = params, auc
    model = fit(parts["train"], best, seed)
    val = parts["validation"]
    calibration = Platt.fit(raw_scores(model, [e.text for e in val]), [e.label for e in val])
    val_p = calibration(raw_scores(model, [e.text for e in val]))
    human_val = np.sort(val_p[[e.label == 0 for e in val]])
    threshold = float(np.quantile(human_val, 0.99, method="higher")) + 1e-9  # at most 1% of validation humans
    val_metrics = metrics(val_p, [e.label for e in val], threshold)
    test = parts["test"]
    test_p = calibration(raw_scores(model, [e.text for e in test]))
    card = {
        "name": name,
        "seed": seed,
        "hyperparameters": best,
        "search": [{**DEFAULT_PARAMS, **o} for o in (search if search is not None else SEARCH)],
        "data": {"files": [os.path.basename(p) for p in distinct(paths)],
                 "splits": {k: {"n": len(v), "ai": sum(e.label for e in v)} for k, v in parts.items()},
                 "excluded": "labels other than human and ai ('mixed' too), non-English texts, empty texts",
                 "skipped": dict(sorted(skipped.items()))},
        "calibration": calibration.to_json(),
        "threshold": threshold,
        "validation": val_metrics,
        "test": {"overall": metrics(test_p, [e.label for e in test], threshold),
                 "by_dataset": breakdown(test, test_p, lambda e: e.dataset),
                 "by_domain": breakdown(test, test_p, lambda e: f"{e.dataset}:{e.domain}"),
                 "by_generator": breakdown(test, test_p, lambda e: e.generator)},
    }
    datasets = len({e.dataset for e in examples})
    if lodo and datasets < LODO_MIN_DATASETS:
        log(f"  leave-one-dataset-out skipped: {datasets} labelled set(s), at least {LODO_MIN_DATASETS} needed; "
            "without it the card bounds no out-of-domain TPR, so share intervals reach 1")
    elif lodo:
        card["leave_one_dataset_out"] = leave_one_dataset_out(examples, best, seed, log,
                                                              reference.weight if reference is not None else None)
        if reference is not None:  # the floor is the worst of both protocols (estimate.TprPrior.from_card)
            card["leave_one_dataset_out_unadapted"] = leave_one_dataset_out(examples, best, seed, log)
    if reference is not None:
        card["reference"] = {"patterns": reference.patterns, "weight": reference.weight, "split": reference.split,
                             "train_documents": len(reference.train), "held_out_documents": len(reference.held_out),
                             "leave_one_dataset_out": "adapted: each held-out set's own humans (half of its "
                                                      "groups) joined training x weight; the other half is tested. "
                                                      "The TPR floor is the lowest of these and of "
                                                      "leave_one_dataset_out_unadapted"}
    with tempfile.TemporaryDirectory() as tmp:
        train_file = os.path.join(tmp, "train.txt")
        _write_train_file(parts["train"], train_file)
        model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=200_000)
    # quantisation moves scores a little: refit calibration and threshold on validation for the shipped model
    calibration = Platt.fit(raw_scores(model, [e.text for e in val]), [e.label for e in val])
    val_p = calibration(raw_scores(model, [e.text for e in val]))
    card["calibration"] = calibration.to_json()
    card["threshold"] = float(np.quantile(val_p[[e.label == 0 for e in val]], 0.99, method="higher")) + 1e-9
    card["validation"] = metrics(val_p, [e.label for e in val], card["threshold"])
    test_p = calibration(raw_scores(model, [e.text for e in test]))
    card["test"]["overall"] = metrics(test_p, [e.label for e in test], card["threshold"])
    card["validation_rates"] = {"tpr": card["validation"]["flagged_ai_at_threshold"],
                                "fpr": card["validation"]["flagged_human_at_threshold"],
                                "n_ai": card["validation"]["ai"], "n_human": card["validation"]["human"]}
    card["validation_histograms"] = score_histograms(val_p, [e.label for e in val])
    if reference is not None:
        held_p = calibration(raw_scores(model, reference.held_out))
        card["reference"]["in_domain"] = {
            "held_out_documents": len(held_p),
            "flagged_at_threshold": float((held_p >= card["threshold"]).mean()),
            "score_quantiles": {str(q): float(np.quantile(held_p, q)) for q in (0.5, 0.9, 0.95, 0.99)},
            "note": "human flag rate and score quantiles on held-out reference documents; the in-domain TPR "
                    "cannot be measured without labelled AI text of the domain"}
    return write_model(model, card, out_dir)


def write_model(model, card: dict, out_dir: str) -> dict:
    """Model and card land together: both are staged beside their final names, then renamed model first. A crash
    between the two renames leaves a card whose sha256 names the old model, which `Detector.load` refuses in one
    line; it never pairs a card with a model it does not describe."""
    os.makedirs(out_dir, exist_ok=True)
    model_path, card_path = os.path.join(out_dir, MODEL_FILE), os.path.join(out_dir, CARD_FILE)
    model.save_model(model_path + ".partial")
    card = {**card, "sha256": sha256_file(model_path + ".partial"), "labels": sorted(model.get_labels())}
    with open(card_path + ".partial", "w") as f:
        json.dump(card, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    with open(model_path + ".partial", "rb") as f:
        os.fsync(f.fileno())
    os.replace(model_path + ".partial", model_path)
    os.replace(card_path + ".partial", card_path)
    return card


BINS = 50


def score_histograms(scores, labels) -> dict:
    """Validation score densities per class, for the threshold-free mixture estimator."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    edges = np.linspace(0, 1, BINS + 1)
    return {"edges": edges.tolist(),
            "human": np.histogram(s[y == 0], edges)[0].tolist(),
            "ai": np.histogram(s[y == 1], edges)[0].tolist()}


def leave_one_dataset_out(examples: list[Example], params: dict, seed: int, log=print,
                          adapt_weight: int | None = None) -> dict:
    """Train on every other dataset (calibrating and thresholding on their validation split), test on the one left
    out: the figure to believe for a crawl the model has never seen. With `adapt_weight` (a domain-adapted model),
    each held-out set is adapted to as the reference adapts the model to a crawl: half of its groups (by a keyed
    hash) lend their human texts to training, `adapt_weight` times each, and the other half is the test. Adaptation
    can lower the TPR on its own domain (it teaches that the domain's style is human), so an adapted model's TPR
    floor must come from adapted models."""
    out = {}
    for held in sorted({e.dataset for e in examples}):
        rest = [e for e in examples if e.dataset != held]
        target = [e for e in examples if e.dataset == held]
        parts = split(rest, seed)
        train = parts["train"]
        if adapt_weight:
            halves = split(target, seed, fractions=(0.5, 0.0))
            train = train + [Example(e.text, 0, "reference", "reference", "human", "", adapt_weight)
                             for e in halves["train"] if e.label == 0]
            target = halves["test"]
        model = fit(train, params, seed)
        val = parts["validation"]
        cal = Platt.fit(raw_scores(model, [e.text for e in val]), [e.label for e in val])
        val_p = cal(raw_scores(model, [e.text for e in val]))
        thr = float(np.quantile(val_p[[e.label == 0 for e in val]], 0.99, method="higher")) + 1e-9
        p = cal(raw_scores(model, [e.text for e in target]))
        out[held] = metrics(p, [e.label for e in target], thr)
        log(f"  held out {held}{' (adapted to its humans)' if adapt_weight else ''}: AUROC {out[held]['auroc']}, "
            f"TPR@5%FPR {out[held]['tpr_at_5pct_fpr']}")
    vals = [m["tpr_at_5pct_fpr"] for m in out.values() if m["tpr_at_5pct_fpr"] is not None]
    aucs = [m["auroc"] for m in out.values() if m["auroc"] is not None]
    out["mean"] = {"tpr_at_5pct_fpr": float(np.mean(vals)) if vals else None,
                   "auroc": float(np.mean(aucs)) if aucs else None}
    return out
