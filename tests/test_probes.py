"""Disentanglement probes: fitted on val only, chance on a clean block, high on a leaky one."""

from __future__ import annotations

import numpy as np

from shortcutlab.evaluation.probes import balancing_weights, probe_pairs, probe_rows


def _split(n: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y, sex = rng.integers(0, 2, n), rng.integers(0, 2, n)
    f_y = np.c_[y + 0.3 * rng.normal(size=n), rng.normal(size=(n, 3))]  # no sex in f_y
    f_sex = np.c_[sex + 0.3 * rng.normal(size=n), rng.normal(size=(n, 3))]
    feats = {"f": np.c_[f_y, f_sex], "f_y": f_y, "f_sex": f_sex}
    return feats, {"y": y, "sex": sex}


def test_probe_pairs() -> None:
    assert probe_pairs(["f", "f_y", "f_sex", "f_site"], ["sex", "site"]) == [
        ("f_y", "sex"),
        ("f_y", "site"),
        ("f_sex", "y"),
        ("f_sex", "site"),
        ("f_site", "y"),
        ("f_site", "sex"),
    ]
    assert probe_pairs(["f"], ["sex"]) == [("f", "sex")]


def test_probe_accuracy_rows() -> None:
    features, labels = {}, {}
    for i, split in enumerate(["val", "inv"]):
        features[split], labels[split] = _split(600, i)
    rows = probe_rows(features, labels, ["sex"])
    by = {(r["split"], r["target"], r["metric"]): r["value"] for r in rows}
    assert set(by) == {
        (s, t, m)
        for s in ("val", "inv")
        for t, m in (("sex", "probe_accuracy[f_y]"), ("y", "probe_accuracy[f_sex]"))
    }
    assert abs(by["inv", "sex", "probe_accuracy[f_y]"] - 0.5) < 0.08  # chance: f_y is clean
    assert by["inv", "y", "probe_accuracy[f_sex]"] < 0.58

    # a leaky block: f_y carries sex
    for split in features:
        features[split]["f_y"] = np.c_[features[split]["f_y"], labels[split]["sex"]]
    rows = probe_rows(features, labels, ["sex"])
    leak = [r for r in rows if r["metric"] == "probe_accuracy[f_y]" and r["split"] == "inv"]
    assert leak[0]["value"] > 0.95


def test_probe_ignores_the_y_z_correlation_of_val() -> None:
    """A clean f_y must not predict z through y, although z = y for 90% of val."""
    features, labels = {}, {}
    for i, split in enumerate(["val", "bal"]):
        feats, lab = _split(2000, i)
        if split == "val":
            rng = np.random.default_rng(5)
            lab["sex"] = np.where(rng.random(2000) < 0.9, lab["y"], 1 - lab["y"])
        features[split], labels[split] = feats, lab
    rows = probe_rows(features, labels, ["sex"])
    acc = {r["split"]: r["value"] for r in rows if r["metric"] == "probe_accuracy[f_y]"}
    assert abs(acc["val"] - 0.5) < 0.1, acc  # an unweighted probe scores about 0.9 here
    assert abs(acc["bal"] - 0.5) < 0.06, acc


def test_balancing_weights() -> None:
    w = balancing_weights([np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0])])
    np.testing.assert_allclose(w * 4 / w.sum(), [2 / 3, 2 / 3, 2 / 3, 2])


def test_non_finite_features_are_skipped() -> None:
    feats, labels = _split(100, 0)
    feats["f_y"][3, 0] = np.nan
    rows = probe_rows({"val": feats}, {"val": labels}, ["sex"])
    assert {r["metric"] for r in rows} == {"probe_accuracy[f_sex]"}


def test_no_val_split_gives_no_rows() -> None:
    feats, labels = _split(50, 0)
    assert probe_rows({"train": feats}, {"train": labels}, ["sex"]) == []


def test_tsne_plot_is_a_png() -> None:
    from shortcutlab.report.figures import tsne_plot

    feats, labels = _split(60, 0)
    png = tsne_plot(feats["f_y"], labels, "f_y", max_points=50)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_tsne_plot_of_an_emptied_block_does_not_crash() -> None:
    """A penalty can make f_y constant; the t-SNE figure then says so (scikit-learn's tree
    segfaulted on it and took the finished run with it)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from shortcutlab.report.figures import tsne_plot\n"
        "labels = {'y': np.arange(200) % 2}\n"
        "for f in (np.zeros((200, 8)), np.full((200, 8), np.nan), np.ones((200, 8)) * 1e-20):\n"
        "    assert tsne_plot(f, labels, 'f_y')[:4] == b'\\x89PNG'\n"
    )
    # in a child process: the failure this guards against kills the interpreter
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
