"""Baseline from MaskMedPaint's code: the same diffusion model samples whole images from noise
under (class, target token), no mask; the classifier trains on real + generated."""

from __future__ import annotations

from shortcutlab.methods.maskmedpaint import MaskMedPaint
from shortcutlab.methods.registry import register


@register
class Text2Img(MaskMedPaint):
    name = "text2img"
    summary = "train on real + images sampled from noise under (class, target domain)"
    generator = "text2img"
