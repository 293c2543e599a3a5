"""Grounding from diffusion cross-attention (docs/methods.md section 8): a tiny model trained
here on images whose only class-dependent pixels are a known square grounds its class token
there; bad input is one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative import ConditionalDiffusion, train_diffusion
from shortcutlab.generative.grounding import GroundingParams, attention_layers, ground, postprocess

pytestmark = pytest.mark.usefixtures("one_thread")

S = 16
SQUARE = (slice(2, 10), slice(6, 14))


def square_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise on grey; class 1 adds a bright square, the only pixels that depend on the class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 + 0.1 * torch.rand(n, 1, S, S, generator=g)
    x[y == 1, :, SQUARE[0], SQUARE[1]] += 0.5
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), y


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return ConditionalDiffusion.create(
        S, 1, {"y": 2, "domain": 2}, latent=False, unet_channels=(8, 16, 16), token_dim=32
    )


@pytest.fixture(scope="module")
def square_model():
    """Trained for 400 steps (about 4 minutes on a loaded 2-core box): ``make test-slow``."""
    torch.manual_seed(0)
    model = ConditionalDiffusion.create(
        S, 1, {"y": 2, "domain": 2}, latent=False, unet_channels=(8, 16, 16), token_dim=32
    )
    x, y = square_images(64, 0)
    train_diffusion(model, x, {"y": y, "domain": 0}, steps=TRAIN_STEPS, batch_size=16, lr=3e-3)
    return model


TRAIN_STEPS = 400


@pytest.mark.slow
def test_the_class_token_lands_on_the_square(square_model):
    x, y = square_images(8, 1)
    pos = y == 1
    g = ground(square_model, x[pos], {"y": y[pos], "domain": 0}, "y", GroundingParams(steps=20))
    assert g.heatmap.shape == (int(pos.sum()), S, S)
    inside = g.heatmap[:, SQUARE[0], SQUARE[1]].sum()
    assert inside > g.heatmap.sum() - inside  # more mass inside the square than outside
    assert g.layers == attention_layers(square_model)[-1:]


def test_postprocess_blurs_thresholds_and_masks():
    raw = np.zeros((1, 32, 32))
    raw[0, 10:20, 10:20] = 1.0
    smooth, mask, heat = postprocess(raw, sigma=2.5)
    assert smooth.max() == pytest.approx(1.0) and smooth.min() == pytest.approx(0.0)
    assert mask[0, 15, 15] and not mask[0, 0, 0]
    assert (heat[~mask] == 0).all() and np.allclose(heat[mask], smooth[mask])


def test_bad_input_is_one_sentence(untrained):
    square_model = untrained
    x, y = square_images(2, 2)
    with pytest.raises(
        ShortcutlabError, match="no token 'ruler'; its condition tokens are y, domain"
    ):
        ground(square_model, x, {"y": y}, "ruler")
    with pytest.raises(ShortcutlabError, match=r"Images must be \(N, 1, 16, 16\)"):
        ground(square_model, torch.zeros(2, 1, 32, 32, dtype=torch.uint8), {"y": y}, "y")
    with pytest.raises(ShortcutlabError, match="layer 9 does not exist"):
        ground(square_model, x, {"y": y}, "y", GroundingParams(steps=2, layers=(9,)))


def test_ground_command_refuses_a_model_of_another_size(untrained, tmp_path, capsys):
    square_model = untrained
    from conftest import run_cli

    square_model.save(tmp_path / "model16")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "dataset: {name: synth-cxr, size: 200, image_size: 32, attributes: [site]}\n"
        "train: {num_threads: 1}\n"
    )
    code, _, err = run_cli(
        [
            "ground",
            cfg,
            "--token",
            "site",
            "--out",
            tmp_path / "g",
            "--model",
            tmp_path / "model16",
        ],
        capsys,
    )
    assert code == 2
    assert "trained on 1-channel 16x16 images, the data has 1-channel 32x32" in err
    code, _, err = run_cli(["ground", cfg, "--token", "ruler", "--out", tmp_path / "g"], capsys)
    assert code == 2 and "--token must be y or an attribute of the config (site)" in err


def test_ground_command_trains_from_the_config_seed_and_scores(tmp_path, capsys):
    """End to end on a phantom: a model trained by `ground` starts from the config's first seed
    (same seed, same weights; another seed, other weights), and the heatmaps are scored against
    the phantom's mask of the token's pixels."""
    from conftest import run_cli

    from shortcutlab.generative.model import ConditionalDiffusion

    def go(seed: int, name: str):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            "dataset: {name: synth-cxr, size: 200, image_size: 32, attributes: [site]}\n"
            f"seeds: [{seed}]\ntrain: {{num_threads: 1}}\n"
        )
        out = tmp_path / name
        args = ["ground", cfg, "--token", "site", "--out", out, "--n", "2", "--steps", "2"]
        code, text, err = run_cli(
            args + ["--train-steps", "2", "--autoencoder-steps", "1", "-q"], capsys
        )
        assert code == 0, err
        model = ConditionalDiffusion.load(out / "model")
        return out, torch.cat([p.detach().flatten() for p in model.unet.parameters()])

    out, a = go(0, "a")
    _, b = go(0, "b")
    _, c = go(1, "c")
    assert torch.equal(a, b) and not torch.equal(a, c)
    import pandas as pd

    scores = pd.read_csv(out / "grounding.csv")
    mean = scores[scores["image"] == "mean"].iloc[0]
    assert 0 <= mean["grounding_pixel_auroc"] <= 1 and 0 < mean["mask_share"] < 0.2
    assert len(list((out / "heatmaps").glob("*.png"))) == 2


def test_a_sink_token_frees_the_field_maps_from_each_other(tmp_path):
    """Without a sink the softmax runs over the field tokens alone: with two fields one token's
    map is one minus the other's at every pixel. With the sink the two no longer sum to one,
    the sink survives a save and load, and grounding reads the field's own token."""
    from shortcutlab.generative import CrossAttentionRecorder

    def maps(model):
        x, y = square_images(2, 3)
        ids = model.condition_ids({"y": y, "domain": 0}, 2)
        z = torch.randn(2, *model.sample_shape)
        with CrossAttentionRecorder(model.unet) as rec:
            model.model_output(z, 10, ids)
        return torch.cat([c[0].flatten(0, -2) for c in rec.maps.values()])  # (rows, tokens)

    plain = maps(
        ConditionalDiffusion.create(
            S, 1, {"y": 2, "domain": 2}, latent=False, unet_channels=(8, 16, 16), token_dim=32
        )
    )
    assert plain.shape[-1] == 2 and torch.allclose(plain[:, 0] + plain[:, 1], torch.ones(1))
    torch.manual_seed(0)
    sunk = ConditionalDiffusion.create(
        S,
        1,
        {"y": 2, "domain": 2},
        latent=False,
        unet_channels=(8, 16, 16),
        token_dim=32,
        sink_token=True,
    )
    probs = maps(sunk)
    assert probs.shape[-1] == 3 and (probs[:, 1] + probs[:, 2] < 0.99).all()
    assert sunk.conditioner.token_index("y") == 1 and sunk.conditioner.token_index("domain") == 2
    sunk.save(tmp_path / "m")
    again = ConditionalDiffusion.load(tmp_path / "m")
    assert torch.equal(again.conditioner.sink_embedding, sunk.conditioner.sink_embedding)
    x, y = square_images(2, 4)
    a = ground(sunk, x, {"y": y, "domain": 0}, "domain", GroundingParams(steps=2, otsu=False))
    b = ground(again, x, {"y": y, "domain": 0}, "domain", GroundingParams(steps=2, otsu=False))
    assert np.allclose(a.raw, b.raw, atol=1e-5)
