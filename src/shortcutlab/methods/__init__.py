"""Methods, one file each, registered by name (``shortcutlab methods`` lists them)."""

from shortcutlab.methods import (  # noqa: F401 - register
    counterfactual_aug,
    cutmix,
    dcor,
    dfr,
    erm,
    groupdistil,
    groupdro,
    img2img,
    jtt,
    kd,
    maskmedpaint,
    mimm,
    mimmx,
    mixup,
    oracle,
    rebalance,
    swift,
    text2img,
    zadversary,
)
from shortcutlab.methods.base import Hparam, Method, TaskInfo
from shortcutlab.methods.registry import METHODS, get_method, register

__all__ = ["METHODS", "Hparam", "Method", "TaskInfo", "get_method", "register"]
