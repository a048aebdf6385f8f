"""The built-in trainer plugins. Each module exposes ``plugin`` (a trainers.TrainerPlugin) and is
registered through the ``advise.trainers`` entry-point group exactly like a third-party plugin. They import
only the public API (``trainers``) and ``advisor.errors``, as a third-party plugin would."""
