import pytest

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import load_config


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
