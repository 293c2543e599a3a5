"""Counterfactual reliance (docs/methods.md section 8): flip rate 0 for a model that ignores a
factor, 1 for one that reads only it; the rows the runner writes."""

import numpy as np
import pytest
import torch

from shortcutlab.data.counterfactual import true_counterfactual
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.reliance import check_mode, reliance_of_factor, reliance_rows


@pytest.fixture(scope="module")
def derm(small_derm):
    table = small_derm
    return table.split("val") if len(table.split("val")) >= 20 else table


def _lookup_model(table, factor):
    """A constructed model that reads only ``factor``: it recognises every image it can be shown
    (the sources and their counterfactuals of each factor) and outputs that image's ``factor``."""
    known = {}
    for f in ["y", *table.attributes]:
        cf = true_counterfactual(table, f)
        for i in range(len(table)):
            value = int(table.meta[factor].iloc[i])
            known[table.images[i].tobytes()] = value
            known[cf[i].tobytes()] = 1 - value if f == factor else value

    def predict(images):
        v = np.array([known[im.tobytes()] for im in images], dtype=float)
        p1 = 0.1 + 0.8 * v
        return np.stack([1 - p1, p1], axis=1)

    return predict


def _rows(results):
    return {(r.factor, row["metric"]): row["value"] for r in results for row in r.rows}


def test_flip_rate_is_one_for_the_factor_a_model_reads_and_zero_for_the_others(derm):
    predict = _lookup_model(derm, "ruler")
    probs = predict(derm.images)
    got = _rows(reliance_rows("val", derm, predict, probs, ["y", "ruler"], derm.grouper))
    assert got[("ruler", "cf_flip_rate")] == 1.0
    assert got[("ruler", "cf_mean_abs_delta")] == pytest.approx(0.8)
    assert got[("ruler", "cf_signed_delta")] == pytest.approx(0.8)  # ruler on -> class 1
    assert got[("y", "cf_flip_rate")] == 0.0
    assert got[("y", "cf_mean_abs_delta")] == 0.0
    assert got[("y", "cf_flip_rate_ci_low")] == got[("y", "cf_flip_rate_ci_high")] == 0.0
    groups = [k for k in got if k[0] == "ruler" and k[1].startswith("cf_flip_rate[")]
    assert groups and all(got[k] == 1.0 for k in groups)

    honest = _lookup_model(derm, "y")
    got = _rows(reliance_rows("val", derm, honest, honest(derm.images), ["y", "ruler"]))
    assert got[("y", "cf_flip_rate")] == 1.0 and got[("ruler", "cf_flip_rate")] == 0.0


def test_partial_reliance_and_its_interval():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 400)
    orig = np.stack([1 - p, p], 1)
    q = np.where(np.arange(400) < 100, 1 - p, p)  # the first quarter mirrored around 0.5
    cf = np.stack([1 - q, q], 1)
    src = np.zeros(400, int)
    r = reliance_of_factor("inv", "site", orig, cf, src, n_boot=300)
    got = {row["metric"]: row["value"] for row in r.rows}
    expected = (orig.argmax(1) != cf.argmax(1)).mean()
    assert got["cf_flip_rate"] == pytest.approx(expected)
    assert got["cf_flip_rate_ci_low"] < expected < got["cf_flip_rate_ci_high"]
    assert got["cf_mean_abs_delta"] == pytest.approx(np.abs(q - p).mean())
    assert all(row["target"] == "site" and row["split"] == "inv" for row in r.rows)


def test_modes_say_what_they_cannot_do(derm):
    from shortcutlab.data.table import ImageTable

    assert check_mode("auto", derm) == "exact" and check_mode("none", derm) is None
    assert check_mode("generated", derm) == "generated"
    with pytest.raises(ShortcutlabError, match="exact, generated or none"):
        check_mode("true", derm)
    plain = ImageTable(
        derm.images, derm.meta.drop(columns="render_row"), derm.attributes, 2, name="mine"
    )
    assert check_mode("auto", plain) is None
    with pytest.raises(ShortcutlabError, match="no exact counterfactuals"):
        check_mode("exact", plain)
    assert check_mode("generated", plain) == "generated"  # user data: any generator works
    three = plain.meta.copy()
    three["ruler"] = np.arange(len(three)) % 3
    many = ImageTable(plain.images, three, plain.attributes, 3, name="mine")
    with pytest.raises(ShortcutlabError, match="two-valued"):
        check_mode("generated", many)


def test_generated_mode_scores_the_makers_images(derm):
    """Mode generated reads its counterfactuals from the maker it is given: the source itself
    (a null edit) moves nothing; the exact counterfactual gives the exact mode's rows."""
    from types import SimpleNamespace

    from shortcutlab.experiment.reliance import split_reliance

    model = _lookup_model(derm, "ruler")
    ctx = SimpleNamespace(
        seed=0, predict=lambda _m, part: torch.log(torch.from_numpy(model(part["x"].numpy())))
    )
    part = derm.tensors()
    probs = model(derm.images)
    calls = []

    def null_edit(split, table, factor):
        calls.append((split, factor, len(table)))
        return table.images.copy()

    args = (None, ctx, "val", derm, part, probs, 20)
    null = _rows(split_reliance(*args, "generated", null_edit))
    assert null[("ruler", "cf_flip_rate")] == 0 and null[("y", "cf_mean_abs_delta")] < 1e-9
    exact = _rows(split_reliance(*args, "exact"))
    true = _rows(split_reliance(*args, "generated", lambda s, t, f: true_counterfactual(t, f)))
    assert true == exact and exact[("ruler", "cf_flip_rate")] == 1
    limited = split_reliance(*args, "generated", null_edit, limit=7)
    assert calls[-1] == ("val", "ruler", 7) and len(limited[0].delta) == 7


def test_run_and_audit_write_reliance_and_attribution_rows(tmp_path, capsys):
    from conftest import run_cli

    from shortcutlab.store.results import read_results

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "dataset: {name: synth-cxr, size: 240, image_size: 32, attributes: [site], "
        "correlation: 0.9}\nmethods: [erm]\nbootstrap: 20\n"
        "train: {epochs: 1, batch_size: 32, feature_dim: 16, num_threads: 1}\n"
    )
    out = tmp_path / "run"
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 0, err
    r = read_results(out / "results.csv")
    cf = r[r["metric"] == "cf_flip_rate"]
    assert set(cf["target"]) == {"y", "site"} and {"val", "inv", "bal"} <= set(cf["split"])
    assert cf["value"].between(0, 1).all()
    assert "Shortcut reliance" in (out / "report.html").read_text()

    ckpt = out / "erm" / "seed_0" / "checkpoint.pt"
    args = ["audit", ckpt, "--data", cfg, "--out", tmp_path / "audit"]
    code, _, err = run_cli([*args, "--cf-limit", "0"], capsys)
    assert code == 2 and "--cf-limit must be 1 or more" in err and "Traceback" not in err
    code, out_text, err = run_cli(args, capsys)
    assert code == 0, err
    a = read_results(tmp_path / "audit" / "results.csv")
    mass = a[a["metric"] == "attribution_mass[gradcam]"]
    assert set(mass["target"]) == {"y", "site"} and mass["value"].between(0, 1).all()
    assert "flip rate when only site changes" in out_text
    assert list((tmp_path / "audit" / "figures").glob("attribution_*.png"))
