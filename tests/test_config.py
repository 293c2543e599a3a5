import pytest

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import MethodSpec, load_config


def test_preset_then_overrides(tmp_path):
    cfg = load_config(
        None,
        "quick",
        ["train.epochs=3", "seeds=[0,1]", "methods=[erm,groupdro]", "dataset.correlation=0.95"],
    )
    assert cfg.train.epochs == 3
    assert cfg.seeds == [0, 1]
    assert [m.name for m in cfg.methods] == ["erm", "groupdro"]
    assert cfg.dataset.correlation == 0.95
    assert cfg.dataset.name == "synth-cxr"


def test_file_overrides_preset_and_method_specs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "methods:\n  - erm\n  - {name: dro-strong, method: groupdro, params: {eta: 0.1}}\n"
    )
    cfg = load_config(path)
    assert cfg.methods[1].registry_name == "groupdro"
    assert cfg.methods[1].params == {"eta": 0.1}


@pytest.mark.parametrize(
    "text, match",
    [
        ("train:\n  epoch: 3\n", "key 'train.epoch': unknown key"),
        ("train: {epochs: -1}\n", "key 'train.epochs'"),
        ("dataset: {correlation: 1.5}\n", "key 'dataset.correlation'"),
        ("dataset: {name: csv}\n", "dataset.root is required"),
        ("methods: [erm, erm]\n", "repeated: erm"),
        ("train: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "must be a mapping"),
        (
            "dataset: {name: csv, root: d, target_domain: {attribute: site}}\n",
            "target_domain is for the embedded datasets",
        ),
        ("dataset: {target_domain: {attribute: site, target: 0}}\n", "must differ"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ShortcutlabError, match=match):
        load_config(path)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ShortcutlabError, match="not of the form"):
        load_config(None, "quick", ["train.epochs"])
    with pytest.raises(ShortcutlabError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ShortcutlabError, match="unknown preset"):
        load_config(None, "huge")


def test_full_preset_covers_every_embedded_dataset():
    from shortcutlab.data.synthetic import SYNTHETIC
    from shortcutlab.experiment.presets import FULL_DATASETS

    assert set(FULL_DATASETS) == set(SYNTHETIC)
    for name, overrides in FULL_DATASETS.items():
        cfg = load_config(None, "full", overrides)
        assert cfg.dataset.name == name
        assert cfg.seeds == [0, 1, 2]
        assert set(cfg.dataset.attributes) <= set(SYNTHETIC[name].attributes)


# -- hyperparameter types (experiment/hparams.py), checked at load --------------------------------
@pytest.mark.parametrize(
    "text, match",
    [
        (
            "hparams:\n  swift: {beta: x}\n",
            r"^hparams\.swift\.beta must be a number, not 'x'$",
        ),
        (
            "methods:\n  - {name: s2, method: swift, params: {step1_epochs: 2.5}}\n",
            r"^methods\[s2\]\.params\.step1_epochs must be an integer, not 2\.5$",
        ),
        ("hparams:\n  swift: {beta: true}\n", r"^hparams\.swift\.beta must be a number, not True$"),
        (
            "hparams:\n  swift: {mask: medium}\n",
            r"^hparams\.swift\.mask must be one of soft, hard, not 'medium'$",
        ),
        (
            "hparams:\n  maskmedpaint: {guidance: [1.0, high]}\n",
            r"^hparams\.maskmedpaint\.guidance must be a number or a list of numbers, not",
        ),
        ("hparams:\n  mimmx: {dls: 1}\n", r"^hparams\.mimmx\.dls must be true or false, not 1$"),
        (
            "hparams:\n  groupdro: {eta: null}\n",
            r"^hparams\.groupdro\.eta must be a number, not None",
        ),
    ],
)
def test_wrongly_typed_hparams_fail_at_load_naming_the_key(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ShortcutlabError, match=match):
        load_config(path)


def test_wrongly_typed_override_fails_at_load():
    with pytest.raises(ShortcutlabError, match=r"hparams\.swift\.beta must be a number, not 'x'"):
        load_config(None, "quick", ["methods=[erm,swift]", "hparams.swift.beta=x"])


def test_numeric_strings_and_ints_are_read_as_floats(tmp_path):
    import yaml

    from shortcutlab.experiment.hparams import method_hparams

    text = (
        "methods: [swift]\n"
        "hparams:\n  swift: {step1_lr: 1e-3, beta: 1, attribute: null, mask: hard}\n"
        "  maskmedpaint: {guidance: 2, strength: [1, 0.5]}\n"
    )
    assert yaml.safe_load(text)["hparams"]["swift"]["step1_lr"] == "1e-3"  # PyYAML: a string
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(path)
    hp = method_hparams(cfg.methods[0], cfg)
    assert hp["step1_lr"] == 1e-3 and type(hp["step1_lr"]) is float
    assert hp["beta"] == 1.0 and type(hp["beta"]) is float
    assert hp["attribute"] is None and hp["mask"] == "hard"
    assert type(hp["step1_epochs"]) is int
    mmp = method_hparams(MethodSpec(name="maskmedpaint"), cfg)
    assert mmp["guidance"] == [2.0] and mmp["strength"] == [1.0, 0.5]
    assert all(type(v) is float for v in mmp["guidance"] + mmp["strength"])


def test_hparam_types_are_inferred_or_given():
    from shortcutlab.methods import Hparam

    assert Hparam(0.1).type is float and Hparam(3).type is int and Hparam(True).type is bool
    assert Hparam(None, type=int).nullable
    with pytest.raises(TypeError, match="needs type="):
        Hparam(None, "a path")
    with pytest.raises(TypeError, match="needs type="):
        Hparam([1.0], "scales")
    with pytest.raises(ShortcutlabError, match="the default must be one of a, b"):
        Hparam("c", choices=("a", "b"))


def test_target_domain_defaults_are_those_make_synthetic_applies():
    from shortcutlab.data.sources import _check_target_domain
    from shortcutlab.experiment.config import TargetDomainConfig

    filled = _check_target_domain({"attribute": "site"}, [], ["site", "ruler"], "synth-derm")
    assert TargetDomainConfig(attribute="site").model_dump() == filled
