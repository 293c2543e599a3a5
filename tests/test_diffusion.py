"""The generative core: training, DDIM sampling and inversion, RePaint inpainting, save/load, SD dirs."""

from __future__ import annotations

import pytest
import torch
from conftest import toy_images, write_tiny_sd

from shortcutlab.errors import ShortcutlabError
from shortcutlab.generative import (
    ConditionalDiffusion,
    denoising_loss,
    inpaint,
    invert,
    sample,
    train_autoencoder,
    train_diffusion,
)

FIELDS = {"y": 2, "domain": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def box_roi(n: int, size: int) -> torch.Tensor:
    roi = torch.zeros(n, size, size, dtype=torch.bool)
    roi[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    return roi


@pytest.fixture(scope="module")
def trained():
    """A tiny pixel-space model (8x8) trained once for the module; ~15 s on one core."""
    torch.manual_seed(0)
    model = ConditionalDiffusion.create(
        8, 3, FIELDS, latent=False, unet_channels=(8, 16, 16), token_dim=32
    )
    images, y = toy_images(32, 8)
    cond = {"y": y, "domain": 0}
    before = denoising_loss(model, images, cond)
    history = train_diffusion(model, images, cond, steps=100, batch_size=16, lr=3e-3, seed=0)
    after = denoising_loss(model, images, cond)
    return model, images, y, before, after, history


@pytest.fixture(scope="module")
def latent_model():
    """A tiny latent model (16x16 -> 8x8x4) with a briefly trained autoencoder."""
    torch.manual_seed(0)
    model = ConditionalDiffusion.create(
        16, 3, FIELDS, latent=True, unet_channels=(16, 32, 32), vae_channels=(8, 16), token_dim=32
    )
    images, y = toy_images(16, 16)
    train_autoencoder(model, images, steps=10, batch_size=8)
    train_diffusion(model, images, {"y": y, "domain": 0}, steps=5, batch_size=8)
    return model, images, y


def test_training_lowers_denoising_loss(trained):
    _, _, _, before, after, history = trained
    assert len(history) == 100
    assert after < 0.5 * before, (before, after)


def test_ddim_inversion_then_sampling_reconstructs(trained):
    model, images, y, *_ = trained
    x, cond = images[:8], {"y": y[:8], "domain": 0}
    x_T = invert(model, x, cond, steps=10, fixed_point_iters=2)
    recon = sample(model, cond, 8, steps=10, x_T=x_T)
    fresh = sample(model, cond, 8, steps=10, seed=5)
    err = (recon.float() - x.float()).abs().mean()
    err_fresh = (fresh.float() - x.float()).abs().mean()
    # Reconstruction to within a few grey levels, far closer than a fresh sample of the class.
    assert err < 8.0, err
    assert err < 0.2 * err_fresh, (err, err_fresh)


@pytest.mark.parametrize("which", ["pixel", "latent"])
def test_inpainting_keeps_roi_exact(trained, latent_model, which):
    model, images, y = (trained[:3]) if which == "pixel" else latent_model
    size = model.image_size
    x, roi = images[:6], box_roi(6, size)
    out = inpaint(
        model,
        x,
        roi,
        {"y": y[:6], "domain": 1},
        steps=6,
        strength=0.8,
        guidance=3.0,
        resample=2,
        seed=3,
    )
    assert out.dtype == torch.uint8 and out.shape == x.shape
    keep = roi[:, None].expand_as(x)
    for i in range(len(x)):
        assert (out[i][keep[i]].int() - x[i][keep[i]].int()).abs().max() == 0
    assert (out[~keep].int() - x[~keep].int()).abs().float().mean() > 0  # the background changed
    # Reproducible per image from its seed, whatever the batch.
    again = inpaint(
        model,
        x[2:3],
        roi[2:3],
        {"y": y[2:3], "domain": 1},
        steps=6,
        strength=0.8,
        guidance=3.0,
        resample=2,
        seed=[5],
    )
    assert torch.equal(again[0], out[2])


def test_classifier_free_guidance_with_null_condition(trained):
    model, *_ = trained
    uncond = sample(model, None, 4, steps=4, guidance=1.0, seed=0)
    null_guided = sample(model, {}, 4, steps=4, guidance=4.0, seed=0)
    assert torch.equal(uncond, null_guided)  # guiding the null condition against itself is a no-op
    guided = sample(model, {"y": 1, "domain": 0}, 4, steps=4, guidance=4.0, seed=0)
    plain = sample(model, {"y": 1, "domain": 0}, 4, steps=4, guidance=1.0, seed=0)
    assert not torch.equal(guided, plain)


def test_composable_guidance_steers_each_field_on_its_own(trained):
    model, images, y, *_ = trained
    x = model.encode(images[:4])
    t = torch.tensor(500)
    ids = model.condition_ids({"y": y[:4], "domain": 1}, 4)
    null = model.conditioner.null_like(ids)
    only_y, only_d = null.clone(), null.clone()
    only_y[:, 0], only_d[:, 1] = ids[:, 0], ids[:, 1]
    out = {
        name: model.model_output(x, t, i)
        for name, i in [("null", null), ("y", only_y), ("d", only_d)]
    }
    composed = model.model_output(x, t, ids, {"y": 1.5, "domain": 4.0})
    expected = out["null"] + 1.5 * (out["y"] - out["null"]) + 4.0 * (out["d"] - out["null"])
    torch.testing.assert_close(composed, expected, atol=1e-5, rtol=1e-4)
    # one field at scale s is plain guidance of that field alone; a left-out field does not count
    torch.testing.assert_close(
        model.model_output(x, t, ids, {"domain": 3.0}),
        model.model_output(x, t, only_d, 3.0),
        atol=1e-5,
        rtol=1e-4,
    )
    assert not torch.allclose(composed, model.model_output(x, t, ids, 4.0), atol=1e-3)
    with pytest.raises(ShortcutlabError, match="unknown condition field"):
        model.model_output(x, t, ids, {"scanner": 2.0})


def test_save_load_round_trip_identical(latent_model, tmp_path):
    model, images, y = latent_model
    model.save(tmp_path / "m")
    loaded = ConditionalDiffusion.load(tmp_path / "m")
    assert loaded.image_size == 16 and loaded.scaling_factor == model.scaling_factor
    cond = {"y": y[:4], "domain": 1}
    a = inpaint(model, images[:4], box_roi(4, 16), cond, steps=4, guidance=2.0, seed=1)
    b = inpaint(loaded, images[:4], box_roi(4, 16), cond, steps=4, guidance=2.0, seed=1)
    assert torch.equal(a, b)


def test_bf16_autocast_trains_and_samples(latent_model):
    model, images, y = latent_model
    dtypes: list[torch.dtype] = []  # output dtype of every conv / linear call of the UNet
    handles = [
        layer.register_forward_hook(lambda _mod, _inputs, out: dtypes.append(out.dtype))
        for layer in model.unet.modules()
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    try:
        hist = train_diffusion(
            model, images, {"y": y, "domain": 0}, steps=1, batch_size=4, bf16=True
        )
        in_training, dtypes[:] = set(dtypes), []
        out = sample(model, {"y": 0, "domain": 1}, 2, steps=2, bf16=True)
        in_sampling = set(dtypes)
    finally:
        for handle in handles:
            handle.remove()
    assert len(hist) == 1 and out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8
    assert in_training == {torch.bfloat16} and in_sampling == {torch.bfloat16}
    assert next(model.unet.parameters()).dtype == torch.float32  # autocast, not a cast


def test_stable_diffusion_format_directory_loads_and_inpaints(tmp_path):
    """A randomly initialised SD-layout checkpoint (unet/, vae/, scheduler/), fine-tuned and inpainted."""
    root = write_tiny_sd(tmp_path / "tiny-sd", channels=3, scheduler=True)

    with pytest.raises(ShortcutlabError, match="condition_fields"):
        ConditionalDiffusion.from_pretrained(root)
    model = ConditionalDiffusion.from_pretrained(root, condition_fields=FIELDS)
    assert model.image_size == 16 and model.scaling_factor == pytest.approx(0.18215)
    images, y = toy_images(4, 16)
    hist = train_diffusion(model, images, {"y": y, "domain": 0}, steps=2, batch_size=4)
    assert len(hist) == 2
    roi = box_roi(4, 16)
    out = inpaint(model, images, roi, {"y": y, "domain": 1}, steps=3, guidance=7.5, seed=0)
    keep = roi[:, None].expand_as(images)
    assert torch.equal(out[keep], images[keep])


def test_user_mistakes_raise_clear_errors(latent_model):
    model, images, y = latent_model
    with pytest.raises(ShortcutlabError, match="Unknown condition"):
        sample(model, {"site": 1}, 2, steps=1)
    with pytest.raises(ShortcutlabError, match="must be in"):
        sample(model, {"y": 7}, 2, steps=1)
    with pytest.raises(ShortcutlabError, match="ROI mask"):
        inpaint(model, images[:2], torch.zeros(2, 8, 8, dtype=torch.bool), None, steps=1)
    with pytest.raises(ShortcutlabError, match="strength"):
        inpaint(model, images[:2], box_roi(2, 16), None, steps=1, strength=0.0)
    with pytest.raises(ShortcutlabError, match="uint8"):
        model.encode(images.float())


def test_cross_attention_recorder_gives_per_token_maps_and_leaves_output_unchanged(latent_model):
    from shortcutlab.generative.attention import CrossAttentionRecorder

    model, images, y = latent_model
    z = model.encode(images[:3])
    ids = model.condition_ids({"y": y[:3], "domain": 1}, 3)
    plain = model.model_output(z, 500, ids)
    with CrossAttentionRecorder(model.unet) as rec:
        recorded = model.model_output(z, 500, ids)
    assert torch.allclose(plain, recorded, atol=1e-5)
    maps = rec.token_maps(16)
    assert maps.shape == (3, 2, 16, 16)  # one map per condition field: y, domain
    assert torch.allclose(maps.sum(1), torch.ones(3, 16, 16), atol=1e-4)
    assert torch.equal(model.model_output(z, 500, ids), plain)  # processors restored
