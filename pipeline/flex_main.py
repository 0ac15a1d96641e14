"""Entry point of the Dataflow Flex Template: `--verb curate|mix|refresh` and the verb's flags, as the CLI takes them.

The launcher passes template parameters as --name=value flags; Beam's own flags (runner, project, region,
temp_location, sdk_container_image, ...) arrive the same way and pass through.
"""
from __future__ import annotations

import sys

import argparse

from pipeline.cli import main
from pipeline.options import CommonOptions, CurateOptions, MixOptions, RefreshOptions

VERBS = ("curate", "mix", "refresh")


def _switches() -> frozenset[str]:
    names = set()
    for cls in (CommonOptions, CurateOptions, MixOptions, RefreshOptions):
        parser = argparse.ArgumentParser()
        cls._add_argparse_args(parser)
        names |= {a.dest for a in parser._actions if isinstance(a, argparse._StoreTrueAction)}
    return frozenset(names)


SWITCHES = _switches()


def run(argv: list[str]) -> int:
    verb = "curate"
    rest = []
    for i, arg in enumerate(argv):
        if arg.startswith("--verb="):
            verb = arg.split("=", 1)[1]
        elif arg == "--verb" and i + 1 < len(argv):
            verb = argv[i + 1]
        elif i == 0 or argv[i - 1] != "--verb":
            rest.append(arg)
    if verb not in VERBS:
        print(f"synthcap flex template: error: --verb must be one of {', '.join(VERBS)}, got {verb!r}",
              file=sys.stderr)
        return 2
    # Flex templates deliver every parameter as --name=value: lists comma-separated, switches as true/false
    expanded = []
    for arg in rest:
        name, _, value = arg[2:].partition("=")
        if arg.startswith("--input="):
            expanded += ["--input", *[p for p in value.split(",") if p]]
        elif name in SWITCHES and value:
            expanded += [f"--{name}"] if value.lower() == "true" else []
        else:
            expanded.append(arg)
    return main([verb, *expanded])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
