"""An example nnx plugin: one activation, one layer, one loss, one optimizer and one dataset.

Nothing is imported here: nnx finds the components through the entry points declared in
``pyproject.toml`` and imports each module only when its component is first asked for.
"""

__version__ = "0.1.0"
