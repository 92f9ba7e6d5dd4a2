"""Processing stages: pure functions over numpy audio, and model-holding classes for Ray Data."""
