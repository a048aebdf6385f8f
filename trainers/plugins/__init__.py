"""The built-in trainer plugins. Each module exposes ``plugin`` (a trainers.base.TrainerPlugin) and is
registered through the ``advise.trainers`` entry-point group exactly like a third-party plugin."""
