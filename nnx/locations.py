"""Where nnx reads its configs and where a run writes by default, decided in one place.

    conf_dir()           nnx's own Hydra configs: the installed package ``nnx.conf``
                         (a checkout's top-level conf/, mapped to that name by pyproject.toml)
    plugin_conf_dirs()   config trees that plugins ship (entry-point group ``nnx.configs``)
    checkout()           the nnx source checkout the working directory is in, or None
    default_store()      ``mlflow.db`` in the working directory (MLflow's own default), or in
                         the checkout's top folder when run from inside an nnx checkout

Nothing here imports Hydra or MLflow.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

CONF_PACKAGE = "nnx.conf"
# [project.entry-points."nnx.configs"] <name> = "<package>": the package's folder holds
# <group>/<option>.yaml files laid out like nnx's conf/ (optimizer/lion.yaml, experiment/...).
CONFIGS_GROUP = "nnx.configs"
STORE_NAME = "mlflow.db"
# What marks a folder as an nnx checkout (an installed nnx has no pyproject.toml beside it).
CHECKOUT_MARKERS = ("pyproject.toml", "nnx/__init__.py", "conf/config.yaml")

_warned: set[str] = set()


@functools.lru_cache(maxsize=1)
def conf_dir() -> Path:
    """The folder of nnx's own configs (``config.yaml`` and one folder per group).

    The package ``nnx.conf`` wherever nnx is installed: an editable install maps it to the
    checkout's conf/, a wheel or an sdist holds a copy. When nnx is imported from a checkout
    without being installed (``PYTHONPATH=.``), there is no such package: conf/ beside it.
    """
    try:
        found = importlib.resources.files(CONF_PACKAGE)
        folder = Path(str(found)) if isinstance(found, Path) else None
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent / "conf"
    if folder is None or not (folder / "config.yaml").is_file():
        raise FileNotFoundError(
            f"nnx's configs are missing (no config.yaml in {folder or found}): nnx must be "
            "installed from a wheel, an sdist or a checkout, unzipped; reinstall it "
            "(pip install --force-reinstall ...)")
    return folder


def plugin_conf_dirs() -> list[tuple[str, Path]]:
    """(distribution, folder) of each config tree an installed plugin declares in
    ``nnx.configs``, sorted by distribution. None with ``NNX_DISABLE_PLUGINS=1``.

    A declaration whose package cannot be found is reported once on stderr and skipped: one
    broken plugin must not stop nnx (nor any other Hydra application) from starting.
    """
    from nnx.registry import HOME_DISTRIBUTION, plugins_disabled

    found: dict[Path, str] = {}
    for ep in entry_points(group=CONFIGS_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        if plugins_disabled() and dist != HOME_DISTRIBUTION:
            continue
        try:
            if ":" in ep.value:
                raise ValueError("name a package (pkg.conf), not an object (pkg:attr)")
            folder = Path(str(importlib.resources.files(ep.value)))
            if not folder.is_dir():
                raise NotADirectoryError(f"{folder} is not a folder")
        except Exception as error:  # noqa: BLE001  (a plugin's import can raise anything)
            _warn_once(f"nnx: warning: {dist}[{ep.name}] in {CONFIGS_GROUP}: cannot use "
                       f"package {ep.value!r} ({type(error).__name__}: {error}); its configs "
                       "are skipped")
            continue
        found.setdefault(folder.resolve(), dist)  # one tree seen twice (two installs): once
    return sorted(((dist, folder) for folder, dist in found.items()), key=lambda d: d[0])


def checkout(start: Path | str | None = None) -> Path | None:
    """The nnx source checkout that ``start`` (default: the working directory) is in: the
    nearest folder, from ``start`` upwards, holding pyproject.toml, nnx/ and conf/config.yaml."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in CHECKOUT_MARKERS):
            return folder
    return None


def default_store(start: Path | str | None = None) -> Path:
    """Where runs are stored when neither ``tracking.uri`` nor ``$NNX_TRACKING_URI`` says:
    ``mlflow.db`` in the working directory, as MLflow itself does, except inside an nnx
    checkout, where every folder of it (``experiments/digits``, ...) shares the top one's."""
    here = Path(start if start is not None else os.getcwd()).absolute()
    return (checkout(here) or here) / STORE_NAME


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
