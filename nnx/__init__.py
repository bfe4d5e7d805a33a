"""nnx: a neural-network workbench written from scratch with NumPy.

``import nnx`` stays cheap: no mlflow, no hydra (those live in nnx.run and nnx.tracking).
"""

from nnx.network import Network, mlp
from nnx.registry import build, get, names, registry

__version__ = "0.1.0"
__all__ = ["Network", "mlp", "build", "get", "names", "registry", "__version__"]
