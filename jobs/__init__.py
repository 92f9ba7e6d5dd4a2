"""Running work on Ray: connecting to a cluster (:mod:`jobs.cluster`) and the unit job runner shared by every
unit-based job (:mod:`jobs.runner`: units -> parts -> merged manifests -> ``_SUCCESS``).

Import rules (docs/DESIGN.md §2): ``jobs`` imports ``storage`` and ``manifests`` only; ``pipelines``, ``codec`` and
``lm`` may import it."""
