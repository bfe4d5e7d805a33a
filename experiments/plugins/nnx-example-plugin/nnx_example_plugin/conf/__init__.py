"""The plugin's Hydra configs, laid out like nnx's conf/ (one folder per group); declared in
pyproject.toml under the entry-point group ``nnx.configs``. Only YAML here."""
