"""The defaults of a domain shift (``dataset.target_domain``), written once.

``make_synthetic`` fills them into the plain dict it is given, and the config's
``TargetDomainConfig`` takes its field defaults from here (the data layer does not import the
experiment layer). This module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any


def target_domain_defaults() -> dict[str, Any]:
    """Every key of a target domain but ``attribute``, at its default (a fresh dict): images
    of domain value 0 are the source and of 1 the target, 600 labelled target images for
    evaluation and 100 unlabelled ones, no attribute fixed."""
    return {"source": 0, "target": 1, "size": 600, "unlabelled": 100, "fixed": {}}
