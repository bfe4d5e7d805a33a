"""nnx's Optuna sweeper, where Hydra looks for plugins (see ``nnx.optuna_sweeper``)."""
