"""A method's hyperparameters from a config, checked by name and by type.

``method_hparams`` merges the registry defaults (``Method.hparam_spec``), the ``train`` section,
``hparams.<method>`` and a method entry's ``params``; ``validate_names`` checks every method,
hyperparameter and dataset name of a config. A value of the wrong type fails here, in one
sentence that names where it was set (``hparams.swift.beta``), instead of mid-run. Ints are read
as floats where a float is expected, and so are numeric strings such as ``1e-3`` (PyYAML reads
``1e-3``, having no dot, as a string); a bool is never a number.
"""

from __future__ import annotations

from typing import Any

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import ExperimentConfig, MethodSpec
from shortcutlab.methods import get_method


def method_hparams(spec: MethodSpec, cfg: ExperimentConfig) -> dict[str, Any]:
    """Defaults <- train section (lr, weight decay) <- config ``hparams[method]`` <- spec params.

    Every configured value is checked against its ``Hparam`` type (see the module doc).
    """
    cls = get_method(spec.registry_name)
    spec_hp = cls.hparam_spec()
    hp = cls.hparam_defaults()
    hp["lr"] = cfg.train.lr
    if "weight_decay" not in cls.HPARAMS:
        hp["weight_decay"] = cfg.train.weight_decay
    for source, where in (
        (cfg.hparams.get(spec.registry_name, {}), f"hparams.{spec.registry_name}"),
        (
            cfg.hparams.get(spec.name, {}) if spec.name != spec.registry_name else {},
            f"hparams.{spec.name}",
        ),
        (spec.params, f"methods[{spec.name}].params"),
    ):
        for k, v in source.items():
            if k not in hp:
                raise ShortcutlabError(
                    f"{where}: '{k}' is not a hyperparameter of {spec.registry_name}; "
                    f"it has: {', '.join(sorted(hp))}"
                )
            hp[k] = spec_hp[k].coerce(v, f"{where}.{k}")
    return hp


def validate_names(cfg: ExperimentConfig) -> None:
    """Unknown methods, hyperparameters or datasets, and hyperparameters of the wrong type, fail
    before anything is written."""
    from shortcutlab.methods import METHODS

    for spec in cfg.methods:
        method_hparams(spec, cfg)
    spec_names = {m.name: m.registry_name for m in cfg.methods}
    for key, values in cfg.hparams.items():
        registry = spec_names.get(key, key)
        if registry not in METHODS:
            raise ShortcutlabError(f"hparams.{key}: there is no method '{key}'")
        known = get_method(registry).hparam_spec()
        for k, v in values.items():
            if k not in known:
                raise ShortcutlabError(
                    f"hparams.{key}: '{k}' is not a hyperparameter of {registry}; "
                    f"it has: {', '.join(sorted(known))}"
                )
            known[k].coerce(v, f"hparams.{key}.{k}")
    from shortcutlab.data.adapters import ADAPTERS

    if cfg.dataset.name not in ("csv", "npz", *ADAPTERS):
        from shortcutlab.data.synthetic import SYNTHETIC

        if cfg.dataset.name not in SYNTHETIC:
            raise ShortcutlabError(
                f"unknown dataset '{cfg.dataset.name}'; choose one of: "
                f"{', '.join(sorted(SYNTHETIC))}, csv, npz, {', '.join(sorted(ADAPTERS))}"
            )
