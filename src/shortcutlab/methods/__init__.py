"""Methods, one file each, registered by name (``shortcutlab methods`` lists them)."""

from shortcutlab.methods import dcor, erm, groupdro, mimm, mimmx, rebalance  # noqa: F401 - register
from shortcutlab.methods.base import Hparam, Method, TaskInfo
from shortcutlab.methods.registry import METHODS, get_method, register

__all__ = ["METHODS", "Hparam", "Method", "TaskInfo", "get_method", "register"]
