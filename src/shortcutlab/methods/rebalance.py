"""Rebalance: ERM on batches drawn so that every joint (y, z1..zk) group is equally likely."""

from __future__ import annotations

from shortcutlab.methods.erm import ERM
from shortcutlab.methods.registry import register


@register
class Rebalance(ERM):
    name = "rebalance"
    summary = "group-balanced sampling over y x all attributes, then cross-entropy"
    sampling = "group_balanced"
    needs_every_group = True
