"""Lightning glue: one LightningModule per setting, each with a ``build(cfg)`` used by train.py."""
