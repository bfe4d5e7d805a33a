"""A run's config folders (nnx's, the plugins', the user's ``--config-dir``) and the checks of
a command line against them that Hydra makes with a traceback or a vague message.

    folders = config_folders(argv)      # in Hydra's search order, first match winning
    check_config_dir(argv)              # --config-dir/-cd names an existing folder
    check_experiments(argv)             # each experiment file's defaults name real options

Each check prints one paragraph (``nnx: error: ...``: the path, the problem, what to do) and
exits with status 2. Hydra is not imported: files are read with PyYAML.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from nnx.locations import conf_dir, plugin_conf_dirs

CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def fail(message: str) -> None:
    """One paragraph on stderr and exit status 2: how nnx reports a bad command line."""
    print(f"nnx: error: {message}", file=sys.stderr)
    sys.exit(2)


def given_config_dir(argv: list[str]) -> tuple[str, str] | None:
    """(flag, value) of the last ``--config-dir X``/``--config-dir=X``/``-cd X`` in ``argv``."""
    found = None
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            found = (flag, value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
    return found


def check_config_dir(argv: list[str]) -> None:
    """A ``--config-dir`` that is missing, or not a folder: its path and what to give."""
    given = given_config_dir(argv)
    if given is None:
        return
    flag, value = given
    folder = Path(value).expanduser().absolute()
    if value and folder.is_dir():
        return
    problem = "the folder is missing after it" if not value else (
        f"{folder} is not a folder" if folder.exists() else f"no such folder {folder}")
    fail(f"{flag} {value}: {problem}. Give the folder that holds your own config groups "
          "(for example `--config-dir conf`, with conf/experiment/<name>.yaml in it), relative "
          f"to the working directory {Path.cwd()} or absolute; nnx's own configs "
          f"({conf_dir()}) are always searched too")


def config_folders(argv: list[str]) -> list[Path]:
    """The folders Hydra searches for group options, in its order: nnx's conf/, the plugins'
    trees, then the user's ``--config-dir`` (Hydra puts it after the others)."""
    folders = [conf_dir(), *(folder for _, folder in plugin_conf_dirs())]
    given = given_config_dir(argv)
    if given is not None and given[1]:
        folders.append(Path(given[1]).expanduser().absolute())
    return folders


def options(group: str, folders: list[Path]) -> list[str]:
    """Every option of ``group``: its YAML files in ``folders``, and the registered names of a
    component group (nnx generates a node for those without YAML)."""
    from nnx.config import GROUP_KINDS
    from nnx.registry import registry

    names = {p.stem for folder in folders for p in (folder / group).glob("*.yaml")}
    if group in GROUP_KINDS:
        names.update(registry(GROUP_KINDS[group]).names())
    return sorted(names)


def find_option(group: str, name: str, folders: list[Path]) -> Path | None:
    """The file of option ``name`` of ``group``: the first folder's that has it."""
    return next((f / group / f"{name}.yaml" for f in folders
                 if (f / group / f"{name}.yaml").is_file()), None)


def check_experiments(argv: list[str]) -> None:
    """Each ``experiment=<name>`` on the command line: the defaults of its file (and of the
    experiments it builds on) name options that exist, or the error names the file and the
    entry, with the valid options. An unknown experiment itself is left to Hydra, which lists
    the valid ones."""
    folders = config_folders(argv)
    for arg in argv:
        key, eq, value = arg.lstrip("+").partition("=")
        if key == "experiment" and eq and value and value != "null" and "," not in value:
            _check_experiment(value, folders, seen=set())


def _check_experiment(name: str, folders: list[Path], seen: set[str]) -> None:
    import yaml

    path = find_option("experiment", name, folders)
    if path is None or name in seen:
        return
    seen.add(name)
    try:
        text = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        fail(f"{path}: cannot read it ({type(error).__name__}: {error}); fix the file")
    defaults = text.get("defaults") if isinstance(text, dict) else None
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, str):  # another experiment this one builds on, or _self_
            if entry != "_self_":
                _check_experiment(entry.lstrip("/").removeprefix("experiment/"), folders, seen)
            continue
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        (key, option), = entry.items()
        group = str(key).removeprefix("override").strip().strip("/")
        if not isinstance(option, str) or "/" in group or group.startswith("hydra"):
            continue  # null, a list of options, a nested or Hydra group: Hydra checks those
        if group == "experiment":
            _check_experiment(option, folders, seen)
            continue
        valid = options(group, folders)
        if option in valid or not valid:
            continue
        close = difflib.get_close_matches(option, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        fail(f"{path}: its defaults entry `{key}: {option}` names no option of the group "
              f"{group}.{hint} Valid options: {', '.join(valid)} (files {group}/<option>.yaml "
              f"in {', '.join(str(f) for f in folders)}, or a registered component's name). "
              "Fix the entry in that file")
