"""nnx: a neural-network workbench written from scratch with NumPy.

``import nnx`` stays cheap: no mlflow, no hydra (those live in nnx.run and nnx.tracking).
"""

from nnx.network import Network, mlp

# The registry's shortcuts; ``nnx.registry`` stays the module (registry(kind) lives there).
from nnx.registry import build, get, names

__version__ = "0.1.0"
__all__ = ["Network", "__version__", "build", "get", "mlp", "names"]
