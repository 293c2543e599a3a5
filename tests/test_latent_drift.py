"""Latent Drifting: delta in sampling, inversion and fine-tuning; the delta search; counterfactual
regeneration; the generation metrics; the counterfactual command and its user mistakes."""

from __future__ import annotations

import json

import conftest
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_cli, write_config, write_csv_dataset, write_tiny_sd
from PIL import Image

from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation import generation_metrics as gm
from shortcutlab.generative import ConditionalDiffusion, invert, sample, train_diffusion
from shortcutlab.generative.counterfactuals import counterfactuals, flipped_values
from shortcutlab.generative.latent_drift import (
    check_delta,
    fit_drift_generator,
    invert_path,
    l1_distance,
    regenerate,
    search_delta,
)
from shortcutlab.generative.params import LatentDriftParams

FIELDS = {"y": 2, "site": 2}

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_images(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return conftest.toy_images(n, size, seed, channels=1)


def tiny(seed: int = 0) -> ConditionalDiffusion:
    torch.manual_seed(seed)
    return ConditionalDiffusion.create(
        8, 1, FIELDS, latent=False, unet_channels=(8, 16, 16), token_dim=16
    )


@pytest.fixture(scope="module")
def trained():
    """A tiny pixel-space model trained with drift 0.1 (shifted target); a few seconds."""
    model = tiny()
    images, y = toy_images(32, 8)
    cond = {"y": y, "site": torch.arange(32) // 2 % 2}  # site independent of y
    train_diffusion(model, images, cond, steps=100, batch_size=16, lr=3e-3, delta=0.1)
    return model, images, cond


def test_delta_zero_is_the_plain_sampler_bit_for_bit():
    model = tiny()
    cond = {"y": torch.tensor([0, 1, 1]), "site": 0}
    plain = sample(model, cond, 3, steps=4, guidance=2.0, seed=3, decode=False)
    zero = sample(model, cond, 3, steps=4, guidance=2.0, seed=3, decode=False, delta=0.0)
    assert torch.equal(plain, zero)
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(invert(model, x, cond, steps=4), invert(model, x, cond, steps=4, delta=0.0))
    # training: delta 0 takes exactly the draws and steps of the plain loop
    a, b = tiny(1), tiny(1)
    ha = train_diffusion(a, x, cond, steps=3, batch_size=3, seed=0)
    hb = train_diffusion(b, x, cond, steps=3, batch_size=3, seed=0, delta=0.0)
    assert ha == hb
    c = tiny(1)
    hc = train_diffusion(c, x, cond, steps=3, batch_size=3, seed=0, delta=0.2)
    assert hc != ha


def test_delta_moves_the_start_and_each_step_mean_by_delta(monkeypatch):
    model = tiny()
    seen = []

    def fake_output(x, t, ids, guidance=1.0, bf16=False):
        seen.append(x.clone())
        return 0.3 * x  # an eps prediction that depends on its input

    monkeypatch.setattr(model, "model_output", fake_output)
    cond, d = {"y": 1}, 0.15
    out0 = sample(model, cond, 2, steps=1, seed=7, decode=False)
    out_d = sample(model, cond, 2, steps=1, seed=7, decode=False, delta=d)
    start0, start_d = seen
    assert torch.allclose(start_d - start0, torch.full_like(start0, d))  # z_T ~ N(delta, I)
    sched = model.ddim_scheduler()
    sched.set_timesteps(1)
    t = sched.timesteps[0]
    mean_d = sched.step(0.3 * start_d, t, start_d, eta=0.0).prev_sample
    assert torch.allclose(out_d, mean_d + d, atol=1e-6)  # the step's mean, moved by delta
    assert torch.allclose(out0, sched.step(0.3 * start0, t, start0, eta=0.0).prev_sample)


def test_inversion_with_drift_then_sampling_reconstructs(trained):
    model, images, cond = trained
    x, c = images[:8], {k: v[:8] for k, v in cond.items()}
    for d in (0.0, 0.1):
        x_T = invert(model, x, c, steps=10, fixed_point_iters=2, delta=d)
        recon = sample(model, c, 8, steps=10, x_T=x_T, delta=d)
        fresh = sample(model, c, 8, steps=10, seed=5, delta=d)
        err = (recon.float() - x.float()).abs().mean()
        err_fresh = (fresh.float() - x.float()).abs().mean()
        assert err < 10.0 and err < 0.3 * err_fresh, (d, err, err_fresh)
    # the path keeper and the core inversion agree; regeneration under the own condition is
    # the core sampler from the path's end
    path = invert_path(model, x, c, steps=6, delta=0.1)
    assert torch.allclose(path[-1], invert(model, x, c, steps=6, delta=0.1), atol=1e-5)
    regen = regenerate(model, path, c, steps=6, guidance=1.5, delta=0.1)
    assert torch.equal(regen, sample(model, c, 8, 6, 1.5, x_T=path[-1], delta=0.1))


def test_counterfactuals_keep_pixels_outside_the_edit_mask_and_change_the_class(trained):
    model, images, cond = trained
    x, c = images[:8], {k: v[:8] for k, v in cond.items()}
    keep = torch.zeros(8, 8, 8, dtype=torch.bool)
    keep[:, :, :4] = True
    new = 1 - c["y"].numpy()
    cf = counterfactuals(model, x, c, "y", new, steps=8, guidance=3.0, delta=0.1, keep=keep)
    assert torch.equal(cf[:, :, :, :4], x[:, :, :, :4])
    full = counterfactuals(model, x, c, "y", new, steps=8, guidance=3.0)
    # class 1 is bright, class 0 dark: the flip moves the brightness the way of the new class
    shift = full.float().mean((1, 2, 3)) - x.float().mean((1, 2, 3))
    sign = torch.as_tensor(new * 2 - 1, dtype=torch.float32)
    assert (shift * sign > 0).float().mean() >= 0.75, shift


def test_grid_search_returns_the_argmin_of_its_curve(trained):
    model, images, cond = trained
    grid = [-0.2, -0.1, 0.0, 0.1, 0.2]

    def distance(generated, real):  # brightness gap to a target that delta can reach
        return abs(float(generated.float().mean()) / 255 - 0.7)

    best, curve = search_delta(model, images, cond, grid, n=8, steps=4, distance=distance)
    values = [v for _, v in curve]
    assert [d for d, _ in curve] == grid
    assert best == grid[int(np.argmin(values))]
    assert len(set(values)) == len(values)  # delta changes what is generated
    real = images.float() / 255
    assert l1_distance(real, real) == pytest.approx(0.0, abs=0.02)
    assert l1_distance(real, (real + 0.3).clamp(0, 1)) > 0.1


def test_fit_with_plain_target_and_bad_settings():
    images, y = toy_images(8, 8)
    params = LatentDriftParams(latent=False, steps=2, unet_channels=(8, 16, 16), batch_size=4)
    params.drift_target = "plain"
    model = fit_drift_generator(images, {"y": y, "site": y}, FIELDS, params)
    assert model.conditioner.fields == FIELDS
    with pytest.raises(ShortcutlabError, match="drift_target"):
        train_diffusion(model, images, {"y": y}, steps=1, drift_target="other")
    for bad in (1.5, -2, "x", float("nan")):
        with pytest.raises(ShortcutlabError, match="delta"):
            check_delta(bad)
    with pytest.raises(ShortcutlabError, match="--to"):
        flipped_values(np.array([0, 2]), "site", 3)
    assert list(flipped_values(np.array([0, 2]), "site", 3, to=1)) == [1, 1]
    assert list(flipped_values(np.array([0, 1]), "y", 2)) == [1, 0]


def test_pretrained_stable_diffusion_directory_is_fine_tuned_with_drift(tmp_path):
    root = write_tiny_sd(tmp_path / "tiny-sd", channels=1)
    images, y = toy_images(4, 16)
    params = LatentDriftParams(pretrained=str(root), steps=2, batch_size=4, train_delta=0.05)
    model = fit_drift_generator(images, {"y": y, "site": y}, FIELDS, params)
    assert model.unet.config.cross_attention_dim == 24 and model.image_size == 16
    cf = counterfactuals(model, images, {"y": y, "site": y}, "site", 1 - y, steps=2, delta=0.05)
    assert cf.shape == images.shape and cf.dtype == torch.uint8


def test_fid_kid_ssim_psnr_effectiveness_preservation():
    x, y = toy_images(24, 8)
    x = x.clone()
    x[::3] = (x[::3].float() * 0.8).to(torch.uint8)
    net = gm.train_factor_net(x, {"y": y.numpy(), "site": y.numpy()}, FIELDS, epochs=30)
    same = gm.fid_kid(x, x, net)
    assert abs(same["fid"]) < 1e-3
    halves = gm.fid_kid(x[:12], x[12:], net)  # small sets: KID's subset size follows them
    other = gm.fid_kid(x[:12], x[12:][y[12:] == 0], net)  # one class against both
    assert other["fid"] > 5 * halves["fid"] and other["kid"] > 3 * abs(halves["kid"])
    assert gm.ssim_psnr(x, x)["ssim"] == pytest.approx(1.0)
    assert gm.ssim_psnr(x, 255 - x)["psnr"] < 10
    pred = net.predict(x)
    assert gm.effectiveness(net, x, "y", pred["y"]) == 1.0
    assert gm.effectiveness(net, x, "y", 1 - pred["y"]) == 0.0
    assert gm.preservation(net, x, x, "y") == {"site": 1.0, "mean": 1.0}
    assert gm.l1(x, x) == 0.0


TINY = {
    "autoencoder_steps": 1,
    "diffusion_steps": 3,
    "latent": False,
    "unet_channels": [8, 16, 16],
    "sample_steps": 2,
    "search_samples": 4,
    "diffusion_batch_size": 16,
}


def test_counterfactual_command_writes_a_dataset_and_refuses_bad_input(tmp_path, capsys):
    root = write_csv_dataset(tmp_path / "data", n=96)
    cfg = write_config(tmp_path / "cfg.yaml", root, hparams={"counterfactual-aug": TINY})
    out = tmp_path / "cf"
    args = ["counterfactual", cfg, "--flip", "site", "--out", out, "--limit", "6", "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    meta = pd.read_csv(out / "metadata.csv")
    assert len(meta) == 6 and set(meta["flipped_field"]) == {"site"}
    assert (meta["new_value"] == 1 - meta["old_value"]).all() and (
        meta["site"] == meta["new_value"]
    ).all()
    for col in ("path", "y", "source_image", "source_row", "delta", "seed", "guidance"):
        assert col in meta.columns
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("delta", "fid", "fid_delta0", "kid", "effectiveness", "preservation"):
        assert isinstance(metrics[key], float), key
    for key in ("composition_l1", "reversibility_l1", "ssim", "psnr"):
        assert isinstance(metrics[key], float), key
    assert 0 <= metrics["effectiveness"] <= 1 and 0 <= metrics["preservation"] <= 1
    assert metrics["delta"] in [round(-0.2 + 0.05 * i, 2) for i in range(9)]
    assert Image.open(out / "grid.png").size[0] > 100 and (out / "delta_curve.png").is_file()

    def refused(extra, match, target):
        code, _, err = run_cli(["counterfactual", cfg, "--out", target, "-q", *extra], capsys)
        assert code == 2 and match in err, err
        assert not (target / "metadata.csv").exists() and not (target / "metrics.json").exists()

    # the instrument network is saved and can score another set in the same feature space
    assert (out / "instruments.pt").is_file()
    again = tmp_path / "cf-again"
    extra = ["--limit", "6", "--instruments", out / "instruments.pt"]
    code, _, err = run_cli(
        ["counterfactual", cfg, "--flip", "site", "--out", again, "-q", *extra], capsys
    )
    assert code == 0, err
    metrics2 = json.loads((again / "metrics.json").read_text())
    assert metrics2["instrument_split"].startswith("loaded from")
    assert metrics2["fid"] == pytest.approx(metrics["fid"])  # same sets, same features
    refused(["--flip", "y", "--instruments", tmp_path / "none.pt"], "do not exist", tmp_path / "e")
    refused(["--flip", "age"], "no field 'age'", tmp_path / "a")
    refused(["--flip", "y", "--delta", "1.5"], "delta must be in [-1, 1]", tmp_path / "b")
    refused(["--flip", "y", "--delta", "abc"], "delta must be", tmp_path / "c")
    before = (out / "metadata.csv").read_bytes()
    code, _, err = run_cli(["counterfactual", cfg, "--flip", "y", "--out", out, "-q"], capsys)
    assert code == 2 and "is not empty" in err and (out / "metadata.csv").read_bytes() == before
    # a generator folder fitted on other data
    other = write_csv_dataset(tmp_path / "other", n=96, seed=3)
    cfg2 = write_config(tmp_path / "cfg2.yaml", other, hparams={"counterfactual-aug": TINY})
    from shortcutlab.data.sources import cache_dir

    model_dir = next((cache_dir() / "generated").glob("latent-drift-*"))
    code, _, err = run_cli(
        ["counterfactual", cfg2, "--flip", "site", "--out", tmp_path / "d", "--model", model_dir],
        capsys,
    )
    assert code == 2 and "fitted on other data" in err, err
    assert not (tmp_path / "d").exists()


def test_counterfactual_aug_fits_on_train_only_and_adds_flipped_rows(tmp_path, monkeypatch):
    import shortcutlab.methods.counterfactual_aug as cfa
    from shortcutlab.experiment.config import load_config
    from shortcutlab.experiment.runner import load_dataset, run_experiment

    root = write_csv_dataset(tmp_path / "data", n=96)
    hp = {**TINY, "cache": str(tmp_path / "cache"), "flip": "site"}
    path = write_config(
        tmp_path / "cfg.yaml",
        root,
        methods=["counterfactual-aug"],
        hparams={"counterfactual-aug": hp},
        train={"epochs": 1, "batch_size": 32, "feature_dim": 16},
    )
    seen = {}
    real = cfa.drift_generator

    def spy(x, y, z, *args, **kw):
        seen["x"] = x.clone()
        return real(x, y, z, *args, **kw)

    monkeypatch.setattr(cfa, "drift_generator", spy)
    stages = set()
    run_experiment(
        load_config(str(path)), tmp_path / "run", progress=lambda label, d, n: stages.add(label)
    )
    # the generator's fit and the counterfactuals show on the run's progress display
    assert any(s.startswith("counterfactual-aug") and "diffusion" in s for s in stages), stages
    assert any("counterfactuals (site flipped)" in s for s in stages), stages
    table = load_dataset(load_config(str(path)).dataset)
    train = table.split("train").images
    assert torch.equal(seen["x"], torch.from_numpy(train))  # never val/inv/bal
    report = json.loads(next((tmp_path / "run").rglob("generated.json")).read_text())
    assert report["flipped"] == ["site"] and report["n_generated"] == len(train)


def test_audit_with_generated_counterfactuals_on_user_data(tmp_path, capsys):
    """``audit --counterfactual generated`` on CSV data (no exact counterfactuals): the
    generator is fitted on train once and reused; the rows cover y and the attribute on the
    sampled rows of each held-out split."""
    from shortcutlab.data.sources import cache_dir
    from shortcutlab.store.results import read_results

    root = write_csv_dataset(tmp_path / "data", n=96, seed=11)  # data no other test fits on
    cfg = write_config(
        tmp_path / "cfg.yaml",
        root,
        hparams={"counterfactual-aug": TINY},
        train={"epochs": 1, "batch_size": 32, "feature_dim": 16, "num_threads": 1},
    )
    run = tmp_path / "run"
    code, _, err = run_cli(["run", cfg, "--out", run, "--quiet"], capsys)
    assert code == 0, err
    ckpt = run / "erm" / "seed_0" / "checkpoint.pt"
    before = set((cache_dir() / "generated").glob("latent-drift-*"))
    args = ["audit", ckpt, "--data", cfg, "--counterfactual", "generated", "--cf-limit", "5", "-q"]
    code, text, err = run_cli([*args, "--out", tmp_path / "a1"], capsys)
    assert code == 0, err
    fitted = set((cache_dir() / "generated").glob("latent-drift-*")) - before
    assert len(fitted) == 1
    r = read_results(tmp_path / "a1" / "results.csv")
    flip = r[r["metric"] == "cf_flip_rate"]
    assert set(flip["target"]) == {"y", "site"} and {"val", "inv", "bal"} == set(flip["split"])
    # 5 rows per split: every flip rate is a multiple of 1/5
    assert np.allclose(flip["value"] * 5, np.round(flip["value"] * 5))
    assert "flip rate when only site changes" in text
    stamp = {p: p.stat().st_mtime for p in next(iter(fitted)).iterdir()}
    code, _, err = run_cli([*args, "--out", tmp_path / "a2"], capsys)
    assert code == 0, err
    assert {p: p.stat().st_mtime for p in next(iter(fitted)).iterdir()} == stamp  # reused
    r2 = read_results(tmp_path / "a2" / "results.csv")
    assert r2[r2["metric"] == "cf_flip_rate"]["value"].tolist() == flip["value"].tolist()
