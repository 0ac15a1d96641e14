"""`synthcap VERB ...`: the command line.

User errors print one line on stderr and exit 2; a failure at run time prints one line naming a log file that
holds the traceback, and exits 1. `--help` only prints. Beam's own flags pass through to the runner.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import sys
import tempfile
import threading
import time
import traceback

from pipeline import run_summary
from pipeline.options import VERBS, UserError, own_actions, verb_parser


def usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: synthcap VERB [options]        (synthcap VERB --help for a verb's flags)", "", "verbs:"]
    lines += [f"  {name.ljust(width)}  {v.summary}" for name, v in VERBS.items()]
    lines += ["", "options:", "  -h, --help  show this message", "  --version   print synthcap's version"]
    return "\n".join(lines)


def _closest(word: str, choices) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _flag_owners(flag: str) -> list[str]:
    return [name for name, v in VERBS.items() if any(flag in a.option_strings for a in own_actions(v))]


def _refuse_extras(verb: str, extras: list[str], parser) -> None:
    """Leftovers are typos or another verb's flags: name the first, and what was probably meant."""
    for arg in extras:
        if not arg.startswith("-"):
            raise UserError(f"unexpected argument {arg!r} (see synthcap {verb} --help)")
        flag = arg.split("=", 1)[0]
        owners = _flag_owners(flag)
        if owners:
            owned = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
            raise UserError(f"{flag} is a flag of {owned}, not of {verb}")
        known = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
        hint = _closest(flag, known)
        raise UserError(f"unknown flag {flag}{hint or f' (see synthcap {verb} --help)'}")


def parse(verb: str, argv: list[str]):
    """The verb's flags, validated; returns them and the argv for the pipeline (our flags and Beam's)."""
    for arg in argv:  # bytes that are not UTF-8 arrive as lone surrogates, which no output (JSON, Parquet) can hold
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"argument {os.fsencode(arg)!r} is not valid UTF-8; synthcap records its flags and paths "
                            f"in UTF-8 outputs") from None
    spec = VERBS[verb]
    parser = verb_parser(spec)
    ns, extras = parser.parse_known_args(argv)
    _refuse_extras(verb, extras, parser)
    for name in spec.required:
        if getattr(ns, name) in (None, []):
            raise UserError(f"--{name} is required (see synthcap {verb} --help)")
    _refuse_empty(ns, spec)
    if getattr(ns, "no_score", False):
        given = [flag for flag, value in (("--human_reference", getattr(ns, "human_reference", None)),
                                          ("--detector_model", getattr(ns, "detector_model", None))) if value]
        if given:  # both serve scoring only: the run would silently go without what the user asked for
            raise UserError(f"{given[0]} is for scoring, which --no_score switches off: drop one of them")
    _check_runner(getattr(ns, "runner", None), argv)
    workers = getattr(ns, "direct_num_workers", None)
    if workers is not None and workers < 0:  # Beam takes it and fails inside the run (an IndexError)
        raise UserError(f"--direct_num_workers: expected a whole number >= 0 (0: one per CPU), got '{workers}'")
    return ns, [a for a in argv if a != "--json"]


def _refuse_empty(ns, spec) -> None:
    """A path or name given as '' (`--output "$OUT"` with OUT unset) is no value: sample and demo wrote into the
    working directory, and the verbs that refused it said the flag was missing or that '' matched nothing."""
    for action in own_actions(spec):
        if not action.option_strings or action.type is not None or action.nargs == 0:
            continue
        value = getattr(ns, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            raise UserError(f"{action.option_strings[0]}: got an empty value (an unset shell variable?); give a "
                            f"path or name")


def _check_runner(name, argv: list[str]) -> None:
    """An unknown --runner is the user's typo: say so before anything runs (Beam would fail at run time). For
    Dataflow, the flags it cannot run without are checked here, offline, before the output is claimed: Beam's
    own check looks for a default bucket over the network and fails after the claim."""
    if not name or not isinstance(name, str):
        return
    from apache_beam.runners.runner import PipelineRunner, create_runner

    try:
        runner = create_runner(name)
    except (ValueError, ImportError, AttributeError, TypeError) as e:
        raise UserError(f"unknown --runner {name}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(runner, PipelineRunner):
        raise UserError(f"--runner {name} is not a Beam pipeline runner")
    if type(runner).__name__ in ("DataflowRunner", "TestDataflowRunner"):
        from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

        gcp = PipelineOptions(argv).view_as(GoogleCloudOptions)
        missing = [flag for flag, value in (("--project", gcp.project), ("--region", gcp.region),
                                            ("--temp_location", gcp.temp_location or gcp.staging_location))
                   if not value]
        if missing:
            raise UserError(f"--runner {name} needs {', '.join(missing)} (e.g. --project P --region us-central1 "
                            f"--temp_location gs://BUCKET/tmp)")
        for flag, value in (("--temp_location", gcp.temp_location), ("--staging_location", gcp.staging_location)):
            if value and not value.startswith("gs://"):
                raise UserError(f"{flag} {value}: Dataflow needs a gs:// path")


def _curate(ns, argv):
    from pipeline import curate

    summary, _ = curate.run(argv)
    return run_summary.curate(summary, ns.output.rstrip("/"))


def _refresh(ns, argv):
    from pipeline import refresh

    return run_summary.refresh(refresh.run(argv), ns.output.rstrip("/"), ns.index.rstrip("/"))


def _mix(ns, argv):
    from pipeline import mix

    return run_summary.mix(mix.run(argv), ns.output.rstrip("/"))


def _sample(ns, argv):
    from pipeline import sample

    paths = sample.write_sample(ns.output)
    return {"verb": "sample", "headline": f"wrote {len(paths)} crawl shards to {ns.output}", "shards": len(paths),
            "output": ns.output, "manifest": os.path.join(ns.output, "sample_manifest.json")}


def _demo(ns, argv):
    from pipeline import demo

    demo.run(ns.output)


def _inspect(ns, argv):
    from pipeline import inspect_doc

    inspect_doc.run(ns.doc_id, ns.output)


def _check_model_folder(out: str) -> None:
    """--out is checked before minutes of training, not when the model is written: a file or device in its place,
    a folder that cannot be created or written, or a folder inside a part of a synthcap output (`cur/documents`:
    a file its completion record does not list, so every reader would refuse `cur`) is one line."""
    from transforms.io.commit import OutputClaimError, refuse_inside_an_output

    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder")
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not a folder this user can write")
    try:
        refuse_inside_an_output(out)
    except OutputClaimError as e:
        raise UserError(f"--out: {str(e).replace('output folder ', '', 1)}") from None


def _train_detector(ns, argv):
    from transforms.score.train import ADAPT_SEARCH, load_reference, train_detector

    missing = [p for p in ns.data if not os.path.exists(p)]
    if missing:
        raise UserError(f"--data: no such file: {missing[0]}")
    from transforms.io.files import not_regular

    special = [problem for problem in (not_regular(p) for p in ns.data if not os.path.isdir(p)) if problem]
    if special:
        raise UserError(f"--data: {special[0]}")
    _check_model_folder(ns.out)
    log = (lambda *a: print(*a, file=sys.stderr)) if ns.json else print
    try:
        reference = load_reference(ns.human_reference, ns.seed, ns.reference_weight) if ns.human_reference else None
        card = train_detector(ns.data, ns.out, seed=ns.seed, lodo=not ns.no_lodo,
                              limit_per_file=ns.limit_per_file, log=log, reference=reference,
                              search=ADAPT_SEARCH if reference is not None else None)
    except ValueError as e:
        raise UserError(str(e)) from None
    t = card["test"]["overall"]
    out = {"verb": "train-detector", "headline": f"wrote {os.path.join(ns.out, 'model.ftz')}",
           "model": os.path.join(ns.out, "model.ftz"), "card": os.path.join(ns.out, "model_card.json"),
           "test_auroc": t["auroc"], "test_tpr_at_5pct_fpr": t["tpr_at_5pct_fpr"],
           "records_skipped": sum(card["data"]["skipped"].values())}
    if reference is not None:
        r = card["reference"]["in_domain"]
        out.update(reference_trained=len(reference.train), reference_weight=reference.weight,
                   reference_held_out=r["held_out_documents"], reference_flag_rate=r["flagged_at_threshold"])
    return out


RUNNERS = {"curate": _curate, "refresh": _refresh, "mix": _mix, "inspect": _inspect, "sample": _sample,
           "demo": _demo, "train-detector": _train_detector}


class _LogFile:
    """Warnings and tracebacks go to a log file, not the terminal; the file is removed when a run logs nothing."""

    def __init__(self, verb: str):
        fd, self.path = tempfile.mkstemp(prefix=f"synthcap-{verb}-", suffix=".log")
        os.close(fd)
        self.handler = logging.FileHandler(self.path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler.setLevel(logging.WARNING)
        self.quiet = False  # set when an error line was printed: that one line is all stderr gets
        # RunInference cannot sample memory on this platform and says so once per bundle: noise, not news
        self.handler.addFilter(lambda r: "Resource module is not available" not in r.getMessage())

    def __enter__(self):
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(min(root.level or logging.WARNING, logging.WARNING))
        logging.captureWarnings(True)
        return self

    @contextlib.contextmanager
    def stderr(self):
        """Beam's in-process workers print a failing bundle's traceback to stderr: into the log with it."""
        terminal = sys.stderr
        with open(self.path, "a") as f:
            sys.stderr = f
            try:
                yield
            finally:
                sys.stderr = terminal

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)
        logging.captureWarnings(False)
        self.handler.close()
        if os.path.getsize(self.path) == 0:
            os.remove(self.path)
        elif not self.quiet:
            print(f"synthcap: warnings were logged to {self.path}", file=sys.stderr)


def shows_progress(stream, environ, verb: str) -> bool:
    """A live status line only where a person watches: a terminal, not CI, and not a verb that prints as it goes."""
    return stream.isatty() and not environ.get("CI") and verb not in _Ticker.TALKATIVE


class _Ticker:
    """On a terminal (and not in CI), one status line while a verb runs: records read per second, files done and
    the elapsed time, from the run's live counters (runner.LIVE); silent otherwise. It writes to stderr only, so
    no output file changes."""

    TALKATIVE = ("demo", "train-detector", "inspect")  # they print as they go: a status line would garble it
    EVERY = 1.0  # seconds between updates

    def __init__(self, verb: str):
        self.verb, self.start, self.stream = verb, time.monotonic(), sys.stderr
        self.live = shows_progress(self.stream, os.environ, verb)
        self.stop = threading.Event()

    def _line(self) -> str:
        from pipeline.runner import LIVE

        now = time.monotonic()
        try:
            counts = LIVE.read()
        except Exception:  # a remote runner that cannot answer yet: show the time alone
            counts = None
        running = now - LIVE.started if LIVE.started is not None else None
        return run_summary.progress_line(self.verb, now - self.start, counts, running)

    def _tick(self):
        while not self.stop.wait(self.EVERY):
            line = self._line()
            self.stream.write(f"\r\033[K{line}")
            self.stream.flush()

    def __enter__(self):
        if self.live:
            threading.Thread(target=self._tick, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
        self.seconds = time.monotonic() - self.start


USER_FAILURES = ("CommittedFileChanged: ",)  # raised inside the graph, on the user's inputs
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+): (.+)$")
_WHERE = re.compile(r" \[while running '[^']*'\]$")


_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def one_line(message) -> str:
    """A message as one terminal line: a newline or other control character in something the user gave (a YAML
    key, a source name, a path) is shown escaped (`a\\nb`), never broken across lines or sent raw."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(message))


def failure_line(e: Exception, argv: list[str]) -> str:
    """`Class: message` of what actually failed: a runner hands a worker's error back as the traceback text, whose
    last `module.Class: message` line is the cause."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    name, message = type(e).__name__, lines[0] if lines else ""
    if message.startswith("Traceback"):
        found = [m for m in map(_RAISED.match, lines) if m]
        if found:
            name, message = found[-1].groups()
    message = _WHERE.sub("", message)
    if name == "RecordsLost" and any("multi_threading" in a for a in argv):
        message += ("; apache-beam's multi_threading DirectRunner mode loses records here (measured): use "
                    "--direct_running_mode=multi_processing")
    return f"{name}: {message[:400]}"


def _top_level(argv: list[str]) -> int | str:
    """`synthcap`, `synthcap --help`, `synthcap --version`, or a verb; returns an exit status or the verb."""
    if not argv:
        raise UserError("no verb given; try synthcap --help")
    first = argv[0]
    if first in ("-h", "--help", "help"):
        print(usage())
        return 0
    if first == "--version":
        from transforms.provenance.lineage import synthcap_version

        print(f"synthcap {synthcap_version()}")
        return 0
    if first.startswith("-"):
        raise UserError(f"unknown option {first}; a verb comes first (try synthcap --help)")
    if first not in VERBS:
        raise UserError(f"unknown verb {first}{_closest(first, VERBS)} (verbs: {', '.join(VERBS)})")
    return first


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # `synthcap inspect ... | head`: the reader left; not an error of ours
        # Nothing more can reach the reader, so leave before interpreter teardown: a native library's idle
        # worker thread can abort the process while its static objects are destroyed (SIGABRT, "terminate called
        # without an active exception", in about a quarter of runs on a loaded host).
        os._exit(0)


def _main(argv: list[str]) -> int:
    verb = "?"
    try:
        verb = _top_level(argv)
        if isinstance(verb, int):
            return verb
        ns, rest = parse(verb, argv[1:])
    except UserError as e:
        print(f"synthcap{'' if verb == '?' else ' ' + verb}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help printed the verb's help
        return e.code or 0
    with _LogFile(verb) as log:
        try:
            with _Ticker(verb) as ticker, log.stderr():
                run = RUNNERS[verb](ns, rest)
        except UserError as e:
            log.quiet = True
            print(f"synthcap {verb}: error: {one_line(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"synthcap {verb}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            log.quiet = True
            raise
        except Exception as e:  # a failure at run time: one line here, the traceback in the log
            logging.getLogger("synthcap").error("synthcap %s failed\n%s", verb, traceback.format_exc())
            log.quiet = True
            line = failure_line(e, argv)
            if line.startswith(USER_FAILURES):  # found by the graph, but the user's to fix: a user error
                print(f"synthcap {verb}: error: {one_line(line.split(': ', 1)[1])}", file=sys.stderr)
                return 2
            print(f"synthcap {verb}: failed: {one_line(line)} (traceback in {log.path})", file=sys.stderr)
            return 1
        failed = run_summary.failure(run) if run is not None else None
        log.quiet = bool(failed)  # the verdict line names the log itself: stderr gets that one line
    if run is not None:
        print(run_summary.as_json(run) if getattr(ns, "json", False) else run_summary.render(run, ticker.seconds))
        if failed:  # the run finished and wrote its outputs, but its verdict is a failure: say so, exit 3
            logged = f" (warnings in {log.path})" if os.path.exists(log.path) else ""
            print(f"synthcap {verb}: {failed}{logged}", file=sys.stderr)
            return 3
    return 0


def command() -> None:
    """The `synthcap` command: `main`, then leave without interpreter teardown. Everything the verb writes is
    closed by then (outputs are committed in the graph, the log file is closed), and tearing down the ~2,500
    modules Beam imports costs 0.5-1.3 s of CPU per command (measured) that changes nothing."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left: nothing more can reach it
        pass
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    command()
