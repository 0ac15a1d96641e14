"""`synthcap VERB ...`: the command line. User errors print one line and exit 2; Beam flags pass through."""
from __future__ import annotations

import logging
import os
import sys

from pipeline.options import UserError, unknown_flags

USAGE = """usage: synthcap VERB [options] [beam pipeline flags]

verbs:
  curate   --input GLOB [GLOB ...] --output OUT     read, clean and account for crawl shards
  sample   --output DIR                             write the embedded sample crawl (WARC + WET)
  demo     [--output OUT]                           sample + curate on the DirectRunner
  inspect  DOC_ID --output OUT                      print one curated document's provenance
  refresh  --input GLOB --index INDEX --output OUT  curate a new crawl against an incremental dedup index
  mix      --config mix.yaml --output OUT           a training mix under an exact synthetic ceiling
  train-detector --data FILE [FILE ...] --out DIR [--human_reference GLOB]
                                                    train, calibrate and evaluate the fastText detector
"""


def _curate(argv):
    from pipeline import curate

    summary, _ = curate.run(argv)
    print(f"curated {summary['documents_out']} of {summary['records_read']} records; "
          f"dropped {summary['dropped']}; dead letters {summary['dead_letters']}")


def _sample(argv):
    from pipeline import sample

    out = _flag(argv, "--output") or "sample_crawl"
    paths = sample.write_sample(out)
    print(f"wrote {len(paths)} sample shards to {out}")


def _demo(argv):
    from pipeline import demo

    demo.run(_flag(argv, "--output") or "out/demo")


def _flag(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _mix(argv):
    from pipeline import mix

    m = mix.run(argv)
    line = f"mixed {m['output']['documents']} documents ({m['output']['tokens']} tokens); {m['verdict']['line']}"
    if not m["verdict"]["within_ceiling"]:
        raise UserError(line)
    print(line)


def _refresh(argv):
    from pipeline import refresh

    r = refresh.run(argv)
    s = r["summary"]
    state = f"committed generation {r['generation']}" if r["committed"] else \
        f"nothing new: the index stays at generation {r['generation']}"
    print(f"refreshed: {s['documents_out']} new documents, {s['dropped'].get('duplicate_indexed', 0)} already "
          f"indexed; {state}")


def _inspect(argv):
    from pipeline import inspect_doc

    inspect_doc.run(argv)


def _train_detector(argv):
    import argparse

    from transforms.score.train import ADAPT_SEARCH, REFERENCE_WEIGHT, load_reference, train_detector

    ap = argparse.ArgumentParser(prog="synthcap train-detector")
    ap.add_argument("--data", nargs="+", required=True, help="labelled JSONL.gz files (text, label, domain, ...)")
    ap.add_argument("--out", required=True, help="folder for model.ftz and model_card.json")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no_lodo", action="store_true", help="skip the leave-one-dataset-out evaluation")
    ap.add_argument("--limit_per_file", type=int, help="read at most this many records per file")
    ap.add_argument("--human_reference", nargs="+",
                    help="curated Parquet (globs, local or gs://) whose documents join training as human examples")
    ap.add_argument("--reference_weight", type=int, default=REFERENCE_WEIGHT,
                    help="times each reference document is repeated in training")
    try:
        args = ap.parse_args(argv)
    except SystemExit:
        raise UserError("bad arguments (see synthcap train-detector --help)") from None
    missing = [p for p in args.data if not os.path.exists(p)]
    if missing:
        raise UserError(f"no such file: {missing[0]}")
    if args.reference_weight < 1:
        raise UserError("--reference_weight must be a positive integer")
    try:
        reference = None
        if args.human_reference:
            reference = load_reference(args.human_reference, args.seed, args.reference_weight)
        card = train_detector(args.data, args.out, seed=args.seed, lodo=not args.no_lodo and reference is None,
                              limit_per_file=args.limit_per_file, reference=reference,
                              search=ADAPT_SEARCH if reference is not None else None)
    except ValueError as e:
        raise UserError(str(e)) from None
    t = card["test"]["overall"]
    print(f"wrote {args.out}/model.ftz; test AUROC {t['auroc']:.3f}, TPR@5%FPR {t['tpr_at_5pct_fpr']:.3f}")
    if reference is not None:
        r = card["reference"]["in_domain"]
        print(f"reference: {len(reference.train)} documents trained on (x{reference.weight}), "
              f"{r['held_out_documents']} held out; held-out human flag rate at the threshold "
              f"{r['flagged_at_threshold']:.3f}")


VERBS = {"curate": _curate, "sample": _sample, "demo": _demo, "inspect": _inspect, "mix": _mix, "refresh": _refresh,
         "train-detector": _train_detector}
PIPELINE_VERBS = {"curate", "mix", "refresh"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        print(USAGE, file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    verb, rest = argv[0], argv[1:]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # RunInference warns once per bundle that it cannot sample memory on this platform: noise, not news
    logging.getLogger().handlers[0].addFilter(lambda r: "Resource module is not available" not in r.getMessage())
    try:
        if verb in PIPELINE_VERBS:
            bad = unknown_flags(rest)
            if bad:
                raise UserError(f"unknown flag(s) for {verb}: {' '.join(bad)}")
        VERBS[verb](rest)
    except UserError as e:
        print(f"synthcap {verb}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
