"""The class Hydra instantiates for ``hydra/sweeper=optuna``; the work is in nnx.optuna_sweeper.

Hydra 1.3 instantiates only plugin classes defined under the ``hydra_plugins`` package (it
scans that namespace and refuses any other ``_target_``), so this file holds the subclass and
nothing else. Importing it stays cheap: optuna is imported when a sweep starts.
"""

from nnx.optuna_sweeper import OptunaSweeper as _Impl


class OptunaSweeper(_Impl):
    """``hydra/sweeper=optuna``: see nnx.optuna_sweeper."""
