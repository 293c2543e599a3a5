"""Differentiable dependence estimators used as training penalties: MINE and distance correlation."""

from shortcutlab.estimators.dcor import distance_correlation
from shortcutlab.estimators.mine import MINE, fit_mine

__all__ = ["MINE", "distance_correlation", "fit_mine"]
