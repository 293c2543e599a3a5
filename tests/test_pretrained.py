"""``train.pretrained``: torchvision's and MONAI's key layouts into MONAI's networks, the RGB ->
grayscale adaptation, one-sentence errors, no unpickler, and the run using the weights.

The weights are random: a fake torchvision file is our MONAI network's state renamed the other
way (``_torchvision_names``), so no test needs ImageNet's weights or a download."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from shortcutlab.errors import ShortcutlabError
from shortcutlab.experiment.config import load_config
from shortcutlab.experiment.runner import build_method
from shortcutlab.methods import METHODS
from shortcutlab.methods.base import TaskInfo
from shortcutlab.models import build_model
from shortcutlab.models.checkpoint import Checkpoint
from shortcutlab.models.pretrained import load_pretrained, network_of

pytestmark = pytest.mark.usefixtures("one_thread")
FIRST_CONV = {"densenet121": "features.conv0.weight", "resnet18": "conv1.weight"}
FIRST_CONV["resnet50"] = "conv1.weight"


TORCHVISION_KEYS = {
    ("densenet121", False): [
        "features.conv0.weight",
        "features.norm0.running_var",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock1.denselayer1.conv1.weight",
        "features.denseblock4.denselayer16.norm2.num_batches_tracked",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition3.norm.running_mean",
        "features.transition1.conv.weight",
        "features.norm5.bias",
        "classifier.weight",
    ],
    ("densenet121", True): [
        "features.denseblock1.denselayer1.norm.1.weight",
        "features.denseblock2.denselayer12.conv.2.weight",
    ],
    ("resnet18", False): [
        "conv1.weight",
        "bn1.running_mean",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "fc.bias",
    ],
    ("resnet50", False): [
        "layer1.0.conv3.weight",
        "layer1.0.bn3.running_var",
        "layer1.0.downsample.0.weight",
        "layer3.5.conv2.weight",
        "layer4.2.bn3.bias",
        "fc.weight",
    ],
}


@pytest.fixture(scope="module")
def models():
    """One grayscale model per backbone (feature_dim 16: with a projection), built once."""
    torch.manual_seed(0)
    return {b: build_model(b, 1, 2, image_size=32, feature_dim=16) for b in FIRST_CONV}


def _random_state(net: nn.Module, in_channels: int, first_conv: str) -> dict[str, torch.Tensor]:
    """The network's keys with random values (and ``in_channels`` in the first convolution)."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for k, v in net.state_dict().items():
        if k == first_conv:
            v = torch.empty(v.shape[0], in_channels, *v.shape[2:])
        if v.is_floating_point():
            out[k] = torch.rand(v.shape, generator=g, dtype=v.dtype) + 0.1
        else:
            out[k] = torch.full_like(v, 7)
    return out


def _torchvision_names(state: dict, backbone: str, hub: bool = False) -> dict:
    """MONAI names -> torchvision's (``hub``: the older ``norm.1`` of the download files, without
    ``num_batches_tracked``), with torchvision's classifier and no downsample bias."""
    out = {}
    for k, v in state.items():
        if backbone == "densenet121":
            k = re.sub(r"\.layers\.(norm|relu|conv)([12])\.", r".\1.\2." if hub else r".\1\2.", k)
        if k.endswith("downsample.0.bias") or (hub and k.endswith("num_batches_tracked")):
            continue
        out[k] = v
    head = "classifier" if backbone == "densenet121" else "fc"
    width = 1024 if backbone == "densenet121" else 512 if backbone == "resnet18" else 2048
    out[f"{head}.weight"], out[f"{head}.bias"] = torch.zeros(1000, width), torch.zeros(1000)
    return out


def _save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


@pytest.mark.parametrize(
    "backbone,hub",
    [("densenet121", False), ("densenet121", True), ("resnet18", False), ("resnet50", False)],
)
def test_torchvision_rgb_weights_load_into_a_grayscale_monai_network(
    models, tmp_path, backbone, hub
):
    model = models[backbone]
    net = network_of(model.encoder)
    conv = FIRST_CONV[backbone]
    source = _random_state(net, 3, conv)
    torchvision = _torchvision_names(source, backbone, hub)
    # anchored to torchvision's own names and sizes (state_dict() of its densenet121 has 727
    # entries, resnet18 122, resnet50 320), so the inverse renaming cannot hide a shared mistake
    assert set(TORCHVISION_KEYS[backbone, hub]) <= set(torchvision)
    assert (
        hub or len(torchvision) == {"densenet121": 727, "resnet18": 122, "resnet50": 320}[backbone]
    )
    path = _save(torchvision, tmp_path / "tv.pt")
    projection = model.encoder[1].weight.detach().clone()

    load_pretrained(backbone, model.encoder, path, in_channels=1)

    loaded = net.state_dict()
    # RGB weights, grayscale images: the first convolution is the sum over the 3 channels
    assert torch.equal(loaded[conv], source[conv].sum(dim=1, keepdim=True))
    for k, v in loaded.items():
        if k == conv:
            continue
        if k.endswith("downsample.0.bias"):  # resnet18's MONAI bias; torchvision's conv has none
            assert torch.equal(v, torch.zeros_like(v)), k
        elif hub and k.endswith("num_batches_tracked"):
            continue  # the hub files have no counters: the model keeps its own
        else:
            assert torch.equal(v, source[k]), k
    assert torch.equal(model.encoder[1].weight, projection)  # the projection stays new


def test_monai_layouts_checkpoint_and_safetensors(models, tmp_path):
    net = network_of(models["resnet18"].encoder)
    # a run checkpoint of a model with another feature size: its network loads, nothing else
    other = build_model("resnet18", 1, 3, image_size=32, feature_dim=8)
    ckpt = Checkpoint(
        method="erm",
        name="erm",
        hparams={},
        model_state=other.state_dict(),
        method_state={},
        info={},
        feature_dim=8,
        train={"backbone": "resnet18"},
        dataset={},
        seed=0,
        selected_epoch=0,
        selection={},
        compute={},
    )
    ckpt.save(tmp_path / "checkpoint.pt")
    load_pretrained("resnet18", models["resnet18"].encoder, tmp_path / "checkpoint.pt", 1)
    expected = network_of(other.encoder).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())

    # the bare MONAI network's state dict, as safetensors (with DataParallel's "module.")
    save_file = pytest.importorskip("safetensors.torch").save_file
    source = _random_state(net, 1, "conv1.weight")
    save_file({f"module.{k}": v for k, v in source.items()}, str(tmp_path / "w.safetensors"))
    load_pretrained("resnet18", models["resnet18"].encoder, tmp_path / "w.safetensors", 1)
    assert all(torch.equal(v, source[k]) for k, v in net.state_dict().items())


def _one_sentence(err: pytest.ExceptionInfo) -> None:
    text = str(err.value)
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0, text


@pytest.mark.parametrize(
    "change,match",
    [
        (
            lambda s: s.pop("layer1.0.conv1.weight"),
            r"does not fit resnet18: 1 key\(s\) missing \(layer1\.0\.conv1\.weight\)",
        ),
        (
            lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}),
            r"does not fit resnet18: 1 unexpected \(layer5\.0\.conv1\.weight\)",
        ),
        (
            lambda s: s.update({"bn1.weight": torch.zeros(3)}),
            r"does not fit resnet18: 1 of another shape \(bn1\.weight file 3 vs model 64\)",
        ),
        (
            lambda s: s.update({"conv1.weight": torch.zeros(64, 2, 7, 7)}),
            r"2-channel weights for conv1\.weight and the images have 1 channel",
        ),
    ],
    ids=["missing", "unexpected", "shape", "channels"],
)
def test_a_file_that_does_not_fit_is_one_sentence(models, tmp_path, change, match):
    net = network_of(models["resnet18"].encoder)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = _torchvision_names(_random_state(net, 3, "conv1.weight"), "resnet18")
    change(state)
    with pytest.raises(ShortcutlabError, match=match) as err:
        load_pretrained("resnet18", models["resnet18"].encoder, _save(state, tmp_path / "w.pt"), 1)
    _one_sentence(err)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # untouched


def test_many_problems_are_counted_and_the_first_named(models, tmp_path):
    state = _torchvision_names(
        _random_state(network_of(models["resnet50"].encoder), 3, "x"), "resnet50"
    )
    path = _save({k: v for k, v in state.items() if not k.startswith("layer4.")}, tmp_path / "w.pt")
    with pytest.raises(
        ShortcutlabError,
        match=r"resnet50: \d+ key\(s\) missing \(layer4\.0\.conv1\.weight, .* and \d+ more\)",
    ) as err:
        load_pretrained("resnet50", models["resnet50"].encoder, path, 1)
    _one_sentence(err)


def test_files_that_need_the_unpickler_or_a_wrong_backbone_are_refused(models, tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a pickled module, not a state dict
    with pytest.raises(ShortcutlabError, match="does not load without unpickling code") as err:
        load_pretrained("resnet18", models["resnet18"].encoder, tmp_path / "module.pt", 1)
    _one_sentence(err)
    with pytest.raises(ShortcutlabError, match="not 'small-cnn'"):
        load_pretrained("small-cnn", nn.Linear(2, 2), tmp_path / "module.pt", 1)


def test_image_size_224_and_32_give_the_same_feature_size(models):
    for backbone in ("densenet121", "resnet50"):
        model = models[backbone].eval()
        with torch.no_grad():
            for side in (32, 224):
                assert model.features(torch.rand(1, 1, side, side)).shape == (1, 16)
    with pytest.raises(ShortcutlabError, match="at least 32x32"):
        build_model("densenet121", 1, 2, image_size=16)


def test_the_run_loads_train_pretrained_before_training(tmp_path):
    torch.manual_seed(0)
    net = network_of(build_model("resnet18", 1, 2, image_size=32, feature_dim=16).encoder)
    source = _random_state(net, 3, "conv1.weight")
    path = _save(_torchvision_names(source, "resnet18"), tmp_path / "resnet18-imagenet.pt")
    overrides = ["train.backbone=resnet18", f"train.pretrained={path}", "train.feature_dim=16"]
    cfg = load_config(overrides=overrides)
    info = TaskInfo(num_classes=2, attributes=["z"], attribute_cardinalities=[2], image_size=32)
    method = build_method("erm", METHODS["erm"].hparam_defaults(), info, cfg.train)
    loaded = network_of(method.model.encoder).state_dict()
    assert torch.equal(loaded["conv1.weight"], source["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(loaded["layer4.1.bn2.running_var"], source["layer4.1.bn2.running_var"])

    # checked at config load, in one sentence
    with pytest.raises(ShortcutlabError, match="train.pretrained .*missing.pt is not a file"):
        load_config(
            overrides=["train.backbone=resnet18", f"train.pretrained={tmp_path}/missing.pt"]
        )
    with pytest.raises(ShortcutlabError, match="train.pretrained needs backbone"):
        load_config(overrides=[f"train.pretrained={path}"])  # small-cnn


def test_summed_rgb_weights_see_a_gray_image_as_the_rgb_network_sees_it_repeated(tmp_path):
    torch.manual_seed(0)
    gray = build_model("resnet18", 1, 2, image_size=32, feature_dim=16)
    rgb = build_model("resnet18", 3, 2, image_size=32, feature_dim=16)
    source = _random_state(network_of(rgb.encoder), 3, "conv1.weight")
    path = _save(_torchvision_names(source, "resnet18"), tmp_path / "tv.pt")
    for model, channels in ((gray, 1), (rgb, 3)):
        load_pretrained("resnet18", model.encoder, path, channels)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a = network_of(gray.encoder).eval()(x)
        b = network_of(rgb.encoder).eval()(x.repeat(1, 3, 1, 1))
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)
