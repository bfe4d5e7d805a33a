"""nnx's Hydra configs. Installed, this folder is the package ``nnx.conf`` (see pyproject.toml),
so a checkout, an editable install, a wheel and an sdist read the same files. Only YAML here."""
