"""Entry point of the Dataflow Flex Template: `--verb curate|mix|refresh` and the verb's flags, as the CLI takes them.

The launcher passes template parameters as --name=value flags; Beam's own flags (runner, project, region,
temp_location, sdk_container_image, ...) arrive the same way and pass through.
"""
from __future__ import annotations

import sys

from pipeline.cli import main
from pipeline.options import VERBS as ALL_VERBS, switches

VERBS = tuple(name for name, v in ALL_VERBS.items() if v.pipeline)
SWITCHES = switches()


LISTS = ("input", "human_reference")  # flags that take several paths


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
        if name in LISTS:
            expanded += [f"--{name}", *[p for p in value.split(",") if p]]
        elif name in SWITCHES and value:
            expanded += [f"--{name}"] if value.lower() == "true" else []
        else:
            expanded.append(arg)
    return main([verb, *expanded])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
