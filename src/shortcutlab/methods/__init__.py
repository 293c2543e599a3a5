"""Methods, one file each, registered by name (``shortcutlab methods`` lists them)."""

from shortcutlab.methods import dfr, erm, groupdistil, groupdro, jtt, kd, rebalance  # noqa: F401
from shortcutlab.methods.base import Hparam, Method, TaskInfo
from shortcutlab.methods.registry import METHODS, get_method, register

__all__ = ["METHODS", "Hparam", "Method", "TaskInfo", "get_method", "register"]
