"""The report from a hand-made run folder: one order and colour per method, chance lines and bars
from 0, figures as PDF and 300-dpi PNG, definitions, degenerate flags, run metadata, audit title."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from PIL import Image

from shortcutlab.errors import ShortcutlabError
from shortcutlab.report import figures
from shortcutlab.report.build import build_report, group_sizes, headline_table
from shortcutlab.store.layout import ExperimentLayout

# config order: erm, rebalance, groupdro; results.csv lists them in another order
CONFIG_METHODS = [{"name": "erm", "method": None, "params": {}}, "rebalance", {"name": "groupdro"}]
RESULT_ORDER = ["groupdro", "erm", "rebalance"]
GROUPS = ["y=0,site=A", "y=0,site=B", "y=1,site=A", "y=1,site=B"]
SPLITS = ["train", "val", "inv", "bal"]


def _rows(method: str, seed: int, acc: float, degenerate: float | None, ci: bool = False):
    rows = []

    def add(split, target, metric, value):
        rows.append((method, seed, split, target, metric, value))

    for k, split in enumerate(SPLITS):
        a = acc - 0.1 * k
        add(split, "y", "accuracy", a)
        add(split, "y", "accuracy_ci_low", a - 0.03)
        add(split, "y", "accuracy_ci_high", a + 0.03)
        add(split, "y", "balanced_accuracy", a)
        add(split, "y", "auroc", a + 0.05)
        add(split, "y", "ece", 0.05)
        for j, g in enumerate(GROUPS):
            # one group at exactly 0: its bar must still show
            add(split, "y", f"group_accuracy[{g}]", 0.0 if j == 1 and method == "erm" else a)
        add(split, "y", "worst_group_accuracy", 0.0 if method == "erm" else a - 0.2)
        for gap in ("dp_gap", "eopp_gap", "eodds_gap"):
            add(split, "site", gap, 0.2)
            if ci:
                add(split, "site", f"{gap}_ci_low", 0.1)
                add(split, "site", f"{gap}_ci_high", 0.3)
        add(split, "site", "probe_accuracy[f]", 0.9)
    if degenerate is not None:
        add("val", "y", "degenerate", degenerate)
    return rows


def _results(methods, ci=False, degenerate=("erm",)) -> pd.DataFrame:
    rows = []
    for i, m in enumerate(methods):
        rows += _rows(m, 0, 0.9 - 0.1 * i, 1.0 if m in degenerate else 0.0, ci)
    return pd.DataFrame(rows, columns=["method", "seed", "split", "target", "metric", "value"])


def make_run_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _results(RESULT_ORDER).to_csv(root / "results.csv", index=False)
    cfg = {
        "dataset": {"name": "toy-data", "attributes": ["site"]},
        "methods": CONFIG_METHODS,
        "seeds": [0],
        "train": {"backbone": "small-cnn", "epochs": 3, "batch_size": 8, "device": "auto"},
        "select": "val_worst_group",
        "bootstrap": 20,
    }
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    counts = pd.DataFrame(
        {"train": [50, 5, 5, 50], "val": [20, 3, 3, 20], "inv": [3, 20, 20, 3], "bal": [9] * 4},
        index=pd.Index(["y=0,site=0", "y=0,site=1", "y=1,site=0", "y=1,site=1"], name="group"),
    )
    counts.to_csv(root / "split_counts.csv")
    layout = ExperimentLayout(root)
    for m in RESULT_ORDER:
        run = layout.run(m, 0)
        run.dir.mkdir(parents=True)
        log = [
            {"epoch": e, "loss": 0.7 / (e + 1), "val_worst_group": 0.2 * e, "seconds": 1.0 + e}
            for e in range(3)
        ]
        run.log.write_text("\n".join(json.dumps(e) for e in log) + "\n")
        done = {
            "method": m,
            "seed": 0,
            "selected_epoch": 2,
            "compute": {"seconds": 93.5, "train_seconds": 80.0, "samples": 1200},
            "warnings": ["val accuracy at chance"] if m == "erm" else [],
            "meta": {
                "version": "0.1.0",
                "torch": "2.13.0",
                "device": "cpu",
                "finished": "2026-11-30T12:34:56",
            },
        }
        run.done.write_text(json.dumps(done))
    # a figure the runner wrote (t-SNE): the report keeps showing it
    layout.figures_dir.mkdir()
    Image.new("RGB", (40, 30), "white").save(layout.figures_dir / "tsne_f_y_erm_seed0.png")
    return root


def _bar_colors(ax) -> list[str]:
    from matplotlib.colors import to_hex

    return [
        to_hex(c.patches[0].get_facecolor())
        for c in ax.containers
        if isinstance(c, BarContainer) and c.patches
    ]


def test_methods_follow_config_order_with_one_colour_each():
    results = _results(RESULT_ORDER + ["erm+swift"])
    cfg = {"methods": CONFIG_METHODS}
    order = figures.method_order(cfg, results["method"])
    assert order == ["erm", "rebalance", "groupdro", "erm+swift"]
    colors = figures.method_colors(order)
    assert len(set(colors.values())) == 4
    assert figures.method_colors(order[:2]) == {m: colors[m] for m in order[:2]}
    assert list(headline_table(results, order).index) == order

    fig = figures.shift_figure(results, order, colors, 0.5)
    for ax in fig.axes:
        assert _bar_colors(ax) == [colors[m] for m in order]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()][:4] == order
    curves = figures.curves_figure(
        [{"method": m, "seed": 0, "log": [{"epoch": 0, "loss": 1.0}], "selected_epoch": 0}
         for m in reversed(order)],
        "val_worst_group",
        order,
        colors,
        0.5,
    )  # fmt: skip
    assert [t.get_text() for t in curves.legends[0].get_texts()][:4] == order


def test_bars_start_at_zero_with_a_chance_line_and_the_legend_off_the_data():
    results = _results(RESULT_ORDER)
    order = ["erm", "rebalance", "groupdro"]
    colors = figures.method_colors(order)
    sizes = {(g, s): 10.0 for g in GROUPS for s in SPLITS}
    made = [
        figures.shift_figure(results, order, colors, 0.5),
        figures.group_figure(results, order, colors, 0.5, sizes),
        figures.probe_figure(results, order, colors, {"site": 0.5, "y": 0.5}),
    ]
    for fig in made:
        fig.canvas.draw()
        legend_box = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            assert ax.get_ylim()[0] == 0
            chance = [line for line in ax.lines if line.get_gid() == "chance"]
            assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(50)
            assert not legend_box.overlaps(ax.get_window_extent())
    # erm's worst group is 0: its bar has height 0 and its top is drawn as a line at 0
    wg = made[0].axes[1]
    heights = [p.get_height() for p in wg.containers[0].patches]
    assert heights == [0, 0, 0]
    tops = np.concatenate([c.get_segments() for c in wg.collections if hasattr(c, "get_segments")])
    assert any(seg[0][1] == 0 and seg[1][1] == 0 for seg in tops)
    # the per-group plot names each group's size
    labels = [t.get_text() for t in made[1].axes[0].get_xticklabels()]
    assert labels[0] == "y=0\nsite=A\nn=10"
    gaps = figures.gap_figure(_results(["erm"], ci=True), ["erm"], {"erm": "#000000"})
    assert gaps.axes[0].get_ylim()[0] == 0
    # several seeds: each one is a dot over its method's bar
    two = pd.concat([results, results.assign(seed=1, value=results["value"] * 0.9)])
    fig = figures.shift_figure(two, order, colors, 0.5)
    dots = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert dots and all(len(c.get_offsets()) == 2 for c in dots)


def test_group_sizes_match_category_names_to_codes():
    results = _results(["erm"])
    counts = pd.DataFrame(
        {"val": [1, 2, 3, 4]}, index=["y=0,site=0", "y=0,site=1", "y=1,site=0", "y=1,site=1"]
    )
    sizes = group_sizes(counts, results)
    assert sizes[("y=0,site=B", "val")] == 2 and sizes[("y=1,site=A", "val")] == 3
    assert group_sizes(counts.rename(index={"y=0,site=0": "y=0,site=9"}), results) == {}


def test_run_report_writes_vector_and_300dpi_figures_and_shows_everything(tmp_path):
    root = make_run_folder(tmp_path / "run")
    page = build_report(root)
    names = {p.name for p in (root / "figures").iterdir()}
    for stem in (
        "accuracy_by_split",
        "group_accuracy",
        "fairness_gaps",
        "probe_leakage",
        "training_curves",
    ):
        assert f"report_{stem}.pdf" in names and f"report_{stem}.png" in names
        assert (root / "figures" / f"report_{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        dpi = Image.open(root / "figures" / f"report_{stem}.png").info["dpi"]
        assert dpi == pytest.approx((300, 300), abs=0.01)
    html = page.read_text()
    # self-contained: every image is embedded; the runner's t-SNE is still shown
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "tsne f y erm seed0" in html
    # config order in the tables (results.csv has groupdro first)
    headline = html[html.index('id="headline"') :]
    assert headline.index(">erm") < headline.index(">rebalance") < headline.index(">groupdro")
    # metric definitions where the numbers are
    for text in (
        "demographic-parity difference",
        "equal-opportunity difference",
        "equalized-odds difference",
        "0 = parity",
        "lower is better",
        "probe accuracy",
        "expected calibration error",
    ):
        assert text in html, text
    # degenerate flag (results.csv), warnings and metadata (done.json), selected epoch
    assert "erm seed 0 is flagged degenerate" in html
    assert "degenerate (seed 0)" in html and "groupdro seed 0 is flagged" not in html
    assert "val accuracy at chance" in html
    for text in ("2026-11-30 12:34", "2.13.0", "<dd>cpu</dd>", "1 min 33 s", "selected epoch"):
        assert text in html, text
    summary = (root / "summary.md").read_text()
    assert summary.index("| erm") < summary.index("| rebalance") < summary.index("| groupdro")
    assert "Flagged degenerate" in summary and "erm seed 0" in summary


def test_audit_report_has_its_title_groups_gap_intervals_and_probes(tmp_path):
    root = tmp_path / "audit"
    root.mkdir()
    _results(["mymodel"], ci=True, degenerate=()).to_csv(root / "results.csv", index=False)
    (root / "config.yaml").write_text(yaml.safe_dump({"dataset": {"name": "toy"}}))
    html = build_report(root).read_text()  # detected: gap intervals, no run folders
    assert "<title>shortcutlab audit: mymodel</title>" in html
    assert "20.0 [10.0, 30.0]" in html  # a gap with its bootstrap interval
    assert 'id="probes"' in html and "y=0,site=B" in html
    assert 'id="training"' not in html
    assert "# shortcutlab audit: mymodel" in (root / "summary.md").read_text()
    with pytest.raises(ShortcutlabError, match="report kind"):
        build_report(root, kind="sideways")
