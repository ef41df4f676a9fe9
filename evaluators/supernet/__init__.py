"""Weight sharing, Once-for-All style: one supernet trained once, whose slices trials inherit.

``model`` is the network (every block at its largest, slices by first channels and kernel
centre), ``inherit`` what a trial's student takes from it (weights, then fresh BatchNorm
statistics), ``train`` the sandwich-rule training and its on-disk cache. Which sub-networks
exist and how they are drawn is the space's business: ``spaces/enumerate.py``.
"""

from edgeshrink.evaluators.supernet.inherit import (
    inherit_weights,
    prepare_inherited,
    recalibrate_bn,
)
from edgeshrink.evaluators.supernet.model import SuperNet, SupernetSettings
from edgeshrink.evaluators.supernet.train import fit_supernet, train_supernet
from edgeshrink.spaces.enumerate import sample_subnet

__all__ = [
    "SuperNet",
    "SupernetSettings",
    "fit_supernet",
    "inherit_weights",
    "prepare_inherited",
    "recalibrate_bn",
    "sample_subnet",
    "train_supernet",
]
