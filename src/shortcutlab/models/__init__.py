"""Classifiers split into ``encoder`` and ``head`` so post-hoc methods work on any trained model."""

from shortcutlab.models.backbones import BACKBONES, EncoderHeadModel, build_model

__all__ = ["BACKBONES", "EncoderHeadModel", "build_model"]
