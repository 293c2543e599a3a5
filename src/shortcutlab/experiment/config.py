"""Experiment config: YAML, validated by pydantic, unknown keys are errors (contracts.md)."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shortcutlab.data.target_domain import target_domain_defaults
from shortcutlab.errors import ShortcutlabError

PRESETS_DIR = Path(__file__).parent / "presets"
_TARGET_DOMAIN = target_domain_defaults()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetDomainConfig(_Strict):
    """A domain shift for an embedded dataset (MaskMedPaint's setting): every train/val/inv/bal
    image comes from the ``source`` value of ``attribute``; ``size`` labelled images from the
    ``target`` value form the split ``target`` (evaluation only) and ``unlabelled`` more the split
    ``target_unlabelled``, which domain-adaptation methods may see without their labels (the
    oracle with them). ``fixed`` sets attributes every target image has (e.g. no ruler).
    The defaults are ``data.target_domain``'s, which ``make_synthetic`` applies too."""

    attribute: str
    source: int = _TARGET_DOMAIN["source"]
    target: int = _TARGET_DOMAIN["target"]
    size: int = Field(_TARGET_DOMAIN["size"], ge=2)
    unlabelled: int = Field(_TARGET_DOMAIN["unlabelled"], ge=0)
    fixed: dict[str, int] = Field(default_factory=lambda: target_domain_defaults()["fixed"])

    @model_validator(mode="after")
    def _distinct(self) -> TargetDomainConfig:
        if self.source == self.target:
            raise ValueError("target_domain.source and target_domain.target must differ")
        if self.attribute in self.fixed:
            raise ValueError("target_domain.fixed cannot set the domain attribute itself")
        return self


class MarkerInduce(_Strict):
    """A bright square (side ``size`` x the image side) burnt into a corner (``data/induce.py``)."""

    correlation: float = Field(ge=0.0, le=1.0)
    size: float = Field(0.1, gt=0.0, le=0.5)


class IntensityInduce(_Strict):
    """The whole image scaled by ``scale`` (clipped at 255)."""

    correlation: float = Field(ge=0.0, le=1.0)
    scale: float = Field(1.2, gt=0.0)


class InduceConfig(_Strict):
    """Shortcuts burnt into real images, each a new attribute agreeing with y at
    ``correlation`` in train/val (inv: inverted, bal: none); assigned after the splits."""

    marker: MarkerInduce | None = None
    intensity: IntensityInduce | None = None

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


def _check_bins(bins: dict[str, list[float]] | None, key: str) -> None:
    if bins is None:
        return
    if len(bins) < 2:
        raise ValueError(
            f"dataset.{key} needs at least two bins, e.g. {{young: [0, 50], old: [60, 200]}}"
        )
    spans = sorted((lo, hi, name) for name, (lo, hi) in bins.items())
    for lo, hi, name in spans:
        if lo > hi:
            raise ValueError(f"dataset.{key} bin '{name}' [{lo:g}, {hi:g}] ends before it starts")
    for (_, hi1, a), (lo2, _, b) in zip(spans, spans[1:]):
        if lo2 <= hi1:
            raise ValueError(
                f"dataset.{key} bins '{a}' and '{b}' overlap (both ends are inclusive)"
            )


#: DatasetConfig keys that only the dataset adapters read
ADAPTER_KEYS = (
    "uncertain",
    "frontal_only",
    "age_bins",
    "skin_tone_bins",
    "artifacts",
    "files",
    "published_split",
)


class DatasetConfig(_Strict):
    name: str = "synth-cxr"
    size: int = Field(6000, ge=16)
    image_size: int = Field(64, ge=8, le=1024)
    attributes: list[str] | None = None
    correlation: float = Field(0.9, ge=0.0, le=1.0)
    seed: int = 0
    strengths: dict[str, float] = Field(default_factory=dict)
    fractions: dict[Literal["train", "val", "inv", "bal", "external"], float] | None = None
    # csv / npz only
    root: str | None = None
    metadata: str = "metadata.csv"
    label: str = "y"
    image_column: str = "path"
    mask_column: str = "mask"
    path: str | None = None  # npz file
    # csv / npz: a (label, attribute) group with fewer images than this in a split gets a
    # warning in the loader's notes (its accuracy is noise)
    min_group_size: int = Field(10, ge=1)
    # where MaskMedPaint's ROI comes from: the data's masks, or the diffusion model's grounding
    # of the `y` token for data without them (docs/methods.md section 8)
    roi: Literal["data", "grounding"] = "data"
    # embedded datasets only: a source -> target domain shift (user data: a `target` split)
    target_domain: TargetDomainConfig | None = None
    # dataset adapters (chexpert, mimic-cxr, ...; docs/your-data.md); `label` names the finding
    uncertain: Literal["drop", "zero", "one"] = "zero"  # CheXpert/MIMIC -1 labels
    frontal_only: bool = False
    age_bins: dict[str, tuple[float, float]] | None = None  # name: [lo, hi], ends inclusive
    skin_tone_bins: dict[str, tuple[float, float]] | None = None  # over Fitzpatrick types 1-6
    artifacts: list[str] = Field(default_factory=list)  # artefact label files, joined per image
    files: dict[str, str] = Field(default_factory=dict)  # role -> file, instead of the default
    published_split: bool | None = None  # None: the adapter's default (waterbirds only)
    # csv and adapters: shortcuts burnt into the images (data/induce.py)
    induce: InduceConfig | None = None

    @model_validator(mode="after")
    def _user_data_paths(self) -> DatasetConfig:
        from shortcutlab.data.adapters import ADAPTERS

        _check_bins(self.age_bins, "age_bins")
        _check_bins(self.skin_tone_bins, "skin_tone_bins")
        if self.name in ADAPTERS:
            if not self.root and not (self.name == "medmnist" and self.path):
                raise ValueError(f"dataset.root is required for the {self.name} adapter")
        else:
            for key in ADAPTER_KEYS:  # set to a value of its own (a dumped config has all)
                default = type(self).model_fields[key].get_default(call_default_factory=True)
                if getattr(self, key) != default:
                    raise ValueError(
                        f"dataset.{key} is read by the dataset adapters "
                        f"({', '.join(sorted(ADAPTERS))}), not by '{self.name}'"
                    )
            if self.induce is not None and self.name != "csv":
                raise ValueError(
                    "dataset.induce burns a shortcut into real images: use it with csv or a "
                    "dataset adapter (the embedded datasets have their own attributes)"
                )
        if self.name == "csv" and not self.root:
            raise ValueError("dataset.root is required for a csv dataset")
        if self.name == "npz" and not self.path:
            raise ValueError("dataset.path is required for an npz dataset")
        if self.target_domain is not None and self.name in ("csv", "npz"):
            raise ValueError(
                "dataset.target_domain is for the embedded datasets; your own data names its "
                "target rows in the split column (target, target_unlabelled)"
            )
        return self


class TrainConfig(_Strict):
    backbone: str = "small-cnn"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    feature_dim: int = Field(128, ge=2)
    bf16: bool = False
    device: str = "auto"
    num_threads: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    # training images that re-estimate batch-norm statistics after every epoch ("precise BN",
    # experiment/context.py); 0 keeps the running averages of training (before version 0.2)
    precise_bn: int = Field(1024, ge=0)
    # DataLoader worker processes that gather (and augment) training batches; 0 gathers in
    # the training process (the fast path for embedded data; experiment/loader.py)
    num_workers: int = Field(0, ge=0)
    # training-time augmentation (MONAI): none | light | standard | {transform: {param: value}}
    # (data/augment.py); training batches only
    augment: str | dict[str, dict[str, float] | None] = "none"
    # on CUDA: bf16 autocast and channels-last model and batches (no effect on CPU, where
    # `bf16` alone turns on bf16 autocast)
    amp: bool = True
    # a local weights file for the MONAI backbone (models/pretrained.py: torchvision's or MONAI's
    # key layout, or a run's checkpoint.pt); nothing is downloaded
    pretrained: str | None = None

    @field_validator("augment")
    @classmethod
    def _known_augment(cls, value: Any) -> Any:
        from shortcutlab.data.augment import augment_spec

        augment_spec(value)  # a ValueError names the unknown preset, transform or parameter
        return value

    @model_validator(mode="after")
    def _pretrained_file(self) -> TrainConfig:
        if self.pretrained is None:
            return self
        from shortcutlab.models.pretrained import PRETRAINED_BACKBONES

        if self.backbone not in PRETRAINED_BACKBONES:
            raise ValueError(
                "train.pretrained needs backbone "
                f"{', '.join(PRETRAINED_BACKBONES[:-1])} or {PRETRAINED_BACKBONES[-1]}, "
                f"not '{self.backbone}'"
            )
        if not Path(self.pretrained).expanduser().is_file():
            raise ValueError(
                f"train.pretrained {self.pretrained} is not a file; give a local weights file "
                "(nothing is downloaded)"
            )
        return self


class MethodSpec(_Strict):
    """A method entry: a registry name, or ``{name: label, method: registry name, params: {...}}``."""

    name: str
    method: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def registry_name(self) -> str:
        return self.method or self.name


class SweepResources(_Strict):
    """What one trial asks of Ray (``ray.remote`` resources); its torch threads = ``num_cpus``."""

    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)


class SweepConfig(_Strict):
    """``shortcutlab sweep`` (``experiment/sweep.py``, docs/contracts.md "Sweep folder"):
    ``trials`` hyperparameter draws per method (draw 0: the defaults), each run with every seed;
    per-trial Ray resources; how often Ray retries a trial whose worker died."""

    trials: int = Field(1, ge=1)
    resources: SweepResources = Field(default_factory=SweepResources)
    max_retries: int = Field(3, ge=0)


class ExperimentConfig(_Strict):
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    methods: list[MethodSpec] = Field(default_factory=lambda: [MethodSpec(name="erm")])
    seeds: list[int] = Field(default_factory=lambda: [0])
    train: TrainConfig = Field(default_factory=TrainConfig)
    select: Literal["val_average", "val_worst_group", "val_group_average"] = "val_worst_group"
    hparams: dict[str, dict[str, Any]] = Field(default_factory=dict)
    bootstrap: int = Field(200, ge=0)
    sweep: SweepConfig = Field(default_factory=SweepConfig)  # read by `shortcutlab sweep` only

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_as_specs(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique(self) -> ExperimentConfig:
        names = [m.name for m in self.methods]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method names must be unique; repeated: {', '.join(sorted(dup))}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be unique")
        if not self.methods:
            raise ValueError("methods must list at least one method")
        return self

    def dump(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ShortcutlabError(f"override '{text}' is not of the form key.sub=value")
    key, _, raw = text.partition("=")
    if not key or any(not part for part in key.split(".")):
        raise ShortcutlabError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        raise ShortcutlabError(f"override '{text}': the value is not valid YAML") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ShortcutlabError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ShortcutlabError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ShortcutlabError(f"config file {path} must be a mapping of keys to values")
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _fields_at(loc: tuple) -> list[str]:
    """The keys a config section at ``loc`` accepts (for "did you mean")."""
    model: Any = ExperimentConfig
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        inner = field.annotation
        candidates = [inner, *typing.get_args(inner)]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def validation_message(
    exc: ValidationError, source: str, overrides: list[str] | None = None
) -> str:
    """One sentence: where (the override that set the key, else ``source``), which key, what is
    wrong, and for an unknown key the closest known one."""
    err = exc.errors()[0]
    loc_parts = tuple(err["loc"])
    loc = ".".join(str(p) for p in loc_parts)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        close = difflib.get_close_matches(str(loc_parts[-1]), _fields_at(loc_parts[:-1]), n=1)
        if close:
            msg += f"; did you mean '{'.'.join([*map(str, loc_parts[:-1]), close[0]])}'?"
    for text in reversed(overrides or []):  # the last override of a key wins
        keys = tuple(text.partition("=")[0].split("."))
        if keys == loc_parts[: len(keys)] or loc_parts == keys[: len(loc_parts)]:
            source = f"override '{text}'"
            break
    where = f" key '{loc}'" if loc else ""
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    return f"{source}:{where}: {msg}{more}"


def load_config(
    path: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Preset (if any), then the YAML file (if any), then the dotted overrides; then validate,
    names and hyperparameter types included (``experiment.hparams.validate_names``)."""
    raw: dict[str, Any] = {}
    if preset is not None:
        preset_path = PRESETS_DIR / f"{preset}.yaml"
        if not preset_path.is_file():
            names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
            raise ShortcutlabError(f"unknown preset '{preset}'; choose one of: {', '.join(names)}")
        raw = read_yaml(preset_path)
    if path is not None:
        raw = _merge(raw, read_yaml(path))
    raw = apply_overrides(raw, list(overrides or []))
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ShortcutlabError(
            validation_message(
                exc,
                str(path) if path else (f"preset {preset}" if preset else "config"),
                list(overrides or []),
            )
        ) from None
    from shortcutlab.experiment.hparams import validate_names  # imports the method registry

    validate_names(cfg)  # unknown names and wrongly typed hyperparameters fail here
    return cfg
