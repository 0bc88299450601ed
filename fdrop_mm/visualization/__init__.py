"""Pictures of what FocusedDropout does (paper §4-5, Fig. 2-6).

- ``style``: the one look of all of them (sizes, fonts, colour map, the rule that shortens a
  title, the image-grid and plot-grid layouts); matplotlib, which mmengine requires.
- ``drawing`` (re-exported here): the live mask pictures (``MaskSnapshot``) and the helpers the
  other modules share; needs mmengine, as the training path does.
- ``cam``: class activation maps of several checkpoints side by side (Fig. 4; pytorch-grad-cam).
- ``ref_channels``: per-class reference-channel histograms of a classifier (Fig. 2).
- ``curves``: training and validation curves of several runs (Fig. 5, 6b).
- ``scalars``: mmengine's scalar logs of a work dir, merged over resumed runs.

The submodules are imported by name; ``cam`` needs grad-cam (the ``vis`` extra).
"""
from .drawing import *  # noqa: F401,F403
from .drawing import __all__  # noqa: F401
