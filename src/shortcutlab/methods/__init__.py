"""Methods, one file each, registered by name (``shortcutlab methods`` lists them)."""

from shortcutlab.methods import (  # noqa: F401 - register
    dcor,
    dfr,
    erm,
    groupdistil,
    groupdro,
    jtt,
    kd,
    mimm,
    mimmx,
    rebalance,
    swift,
)
from shortcutlab.methods.base import Hparam, Method, TaskInfo
from shortcutlab.methods.registry import METHODS, get_method, register

__all__ = ["METHODS", "Hparam", "Method", "TaskInfo", "get_method", "register"]
