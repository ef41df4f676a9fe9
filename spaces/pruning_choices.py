"""Names of the pruning methods and channel importances the space may offer, without torch.

Validating a candidate or a space file needs only the names; the realisation is in ``pruning``
(which checks its registries against these).
"""

PRUNING_NAMES = ("global_magnitude", "layer_magnitude", "channel", "semi_2_4")
IMPORTANCE_NAMES = ("l1", "l2", "taylor")
