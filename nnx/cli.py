"""The ``nnx`` command: ``nnx run|compare|list|runs ARGS`` is ``python -m nnx.<command> ARGS``.

    nnx run experiment=tutorial              # Hydra's command line, passed through untouched
    nnx run -m optimizer=sgd,adam            #   (-m, --cfg job, --config-dir conf, ...)
    nnx compare --experiment tutorial
    nnx list --kind optimizers
    nnx runs reap                            # close runs whose heartbeat stopped

Only the chosen command's module is imported (``nnx.run`` loads Hydra, ``nnx.compare`` pandas).
"""

from __future__ import annotations

import sys


def _run(argv: list[str]) -> int:
    from nnx.run import run_command_line

    run_command_line(argv)  # Hydra exits by itself on errors; returns when the run ends
    return 0


def _compare(argv: list[str]) -> int:
    from nnx.compare import main

    return main(argv)


def _list(argv: list[str]) -> int:
    from nnx.list import main

    return main(argv)


def _runs(argv: list[str]) -> int:
    from nnx.runs import main

    return main(argv)


# command -> (what runs it, what it does); each command's own --help has the details.
COMMANDS = {
    "run": (_run, "train: Hydra composes the config from nnx's conf/ (and yours)"),
    "compare": (_compare, "the runs of an experiment or a sweep as a table and plots"),
    "list": (_list, "every registered component, built-in and plugins, and what is broken"),
    "runs": (_runs, "runs and their status; reap runs whose heartbeat stopped; sync a spool"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  nnx {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return ("usage: nnx COMMAND [ARGS ...]   (the same as python -m nnx.COMMAND ARGS)\n\n"
            + "\n".join(lines) + "\n\n`nnx COMMAND --help` for each command's arguments.")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"nnx: error: unknown command {command!r}; valid commands: "
              f"{', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(COMMANDS[command][0](rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
