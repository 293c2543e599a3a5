"""Baseline from MaskMedPaint's code: SDEdit (Meng et al. 2022) at strength 0.5 under
(class, target token), no mask; the classifier trains on real + edited images."""

from __future__ import annotations

from shortcutlab.methods.maskmedpaint import MaskMedPaint
from shortcutlab.methods.registry import register


@register
class Img2Img(MaskMedPaint):
    name = "img2img"
    summary = "train on real + SDEdit (strength 0.5) edits under (class, target domain), no mask"
    generator = "img2img"
