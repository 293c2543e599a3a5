"""Silent wrong answers turned into right answers or loud ones (batch-norm collapse, selection
ties, a failed start, interruptions, mistyped overrides, the terminal tables)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, write_config

from shortcutlab.data.table import ImageTable
from shortcutlab.errors import ShortcutlabError
from shortcutlab.evaluation.sanity import degenerate_reasons
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import ExperimentConfig, load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def _square_table(n: int = 960, size: int = 32, seed: int = 0, contrast: float = 100) -> ImageTable:
    """An easy task: class 1 has a bright square in the centre."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    img = rng.normal(80, 20, (n, 1, size, size))
    img[y == 1, :, 12:20, 12:20] += contrast
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["bal"] * (n - n // 2 - n // 4))
    meta = pd.DataFrame({"y": y, "split": split})
    return ImageTable(np.clip(img, 0, 255).astype(np.uint8), meta, [], 2)


def _cfg(**train) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "csv", "root": "unused", "attributes": []},
            "train": {"epochs": 5, "batch_size": 128, **train},
            "bootstrap": 0,
        }
    )


def _val(res: pd.DataFrame, metric: str) -> float:
    return res[(res.split == "val") & (res.metric == metric)].value.item()


def test_batch_norm_statistics_are_reestimated_so_an_easy_task_does_not_collapse(tmp_path):
    # 480 training images, 5 epochs, the default small-cnn: with the running averages of
    # training (precise_bn=0, the behaviour before the fix) eval mode predicts one class
    table = _square_table()
    res = runner.train_one(table, _cfg(), _cfg().methods[0], 0, tmp_path / "fixed")
    assert _val(res, "accuracy") >= 0.95
    assert _val(res, "degenerate") == 0.0
    assert json.loads((tmp_path / "fixed" / "done.json").read_text())["warnings"] == []


def test_a_collapsed_model_is_flagged_in_results_and_done_json(tmp_path):
    cfg = _cfg(precise_bn=0)  # the stale running statistics reproduce the collapse
    res = runner.train_one(_square_table(), cfg, cfg.methods[0], 0, tmp_path / "stale")
    assert _val(res, "accuracy") == pytest.approx(0.5)
    assert _val(res, "degenerate") == 1.0
    warnings = json.loads((tmp_path / "stale" / "done.json").read_text())["warnings"]
    assert any("predicts class" in w for w in warnings)
    assert any("at chance" in w for w in warnings)


def test_degenerate_reasons_on_hand_made_predictions():
    y = np.array([0, 1] * 50)
    one_class = np.tile([0.9, 0.1], (100, 1))
    assert degenerate_reasons(one_class, y, 0.01, 2)[0] == "predicts class 0 for 100.0% of val"
    good = np.eye(2)[y] * 0.8 + 0.1
    assert degenerate_reasons(good, y, 0.01, 2) == []
    coin = np.eye(2)[np.array([0, 0, 1, 1] * 25)] * 0.8 + 0.1  # half right in each class
    assert "at chance" in degenerate_reasons(coin, y, 0.01, 2)[0]
    assert degenerate_reasons(coin, y, 0.69, 2) == []  # high loss: still learning, no flag
    assert degenerate_reasons(coin, y, None, 2) == []


def test_selection_ties_are_broken_by_the_val_average_and_logged(tmp_path, monkeypatch):
    real = runner.selection_score

    def worst_is_always_zero(rule, probs, y, g, n):
        return 0.0 if rule == "val_worst_group" else real(rule, probs, y, g, n)

    monkeypatch.setattr(runner, "selection_score", worst_is_always_zero)
    cfg = _cfg(epochs=4, lr=3e-4)
    runner.train_one(_square_table(contrast=12), cfg, cfg.methods[0], 0, tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    averages = [e["val_average"] for e in log]
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    assert done["selected_epoch"] == int(np.argmax(averages))  # the first best, not epoch 0
    assert done["selected_epoch"] > 0
    tie_logged = [e["epoch"] for e in log if "selected_by" in e]
    assert tie_logged and tie_logged[-1] == done["selected_epoch"]
    assert any("kept for its val average" in w for w in done["warnings"])


def test_a_run_that_fails_to_load_its_data_does_not_lock_the_folder(tmp_path, csv_dataset, capsys):
    out = tmp_path / "out"
    bad = write_config(tmp_path / "bad.yaml", tmp_path / "no-such-folder")
    code, _, err = run_cli(["run", bad, "--out", out, "--quiet"], capsys)
    assert code == 2 and "no-such-folder" in err
    assert not (out / "config.yaml").exists()
    good = write_config(tmp_path / "good.yaml", csv_dataset, train={"epochs": 1})
    code, _, err = run_cli(["run", good, "--out", out, "--quiet"], capsys)
    assert code == 0, err


def test_an_interrupted_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_experiment", interrupted)
    code, _, err = run_cli(["run", "--preset", "quick", "--out", tmp_path / "q"], capsys)
    text = " ".join(err.split())
    assert code == 130
    assert "resume with the same command" in text and "--preset quick" in text


def test_an_interrupted_sweep_says_what_it_kept_and_how_to_resume(tmp_path, capsys, monkeypatch):
    from shortcutlab.experiment import sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    args = ["sweep", "--preset", "quick", "--trials", "2", "--out", tmp_path / "s"]
    code, _, err = run_cli(args, capsys)
    text = " ".join(err.split())
    assert code == 130 and "finished trials" in text
    assert "resume with the same command" in text and "--trials 2" in text


def test_a_mistyped_override_is_named_with_the_closest_key(tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", tmp_path)
    with pytest.raises(ShortcutlabError, match=r"override 'train.epoch=3'.*'train.epochs'\?"):
        load_config(cfg, None, ["train.epoch=3"])
    with pytest.raises(ShortcutlabError, match=r"^override 'train.epochs=x': key 'train.epochs'"):
        load_config(cfg, None, ["train.epochs=x"])
    # a mistake in the file itself names the file
    (tmp_path / "typo.yaml").write_text("train: {epochz: 3}\n")
    with pytest.raises(ShortcutlabError, match=r"typo.yaml: key 'train.epochz'.*'train.epochs'"):
        load_config(tmp_path / "typo.yaml")


def test_the_headline_table_keeps_long_method_names_at_80_columns(tmp_path, monkeypatch):
    from rich.console import Console

    import shortcutlab.cli as cli

    rows = []
    for method in ("groupdistil-strong-teacher", "erm"):
        for split in ("val", "inv", "bal"):
            for metric in ("accuracy", "worst_group_accuracy"):
                rows.append([method, 0, split, "y", metric, 0.5])
    cols = ["method", "seed", "split", "target", "metric", "value"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "results.csv", index=False)
    console = Console(width=80, record=True)
    monkeypatch.setattr(cli, "out_console", console)
    cli._print_headline(tmp_path)
    assert "groupdistil-strong-teacher" in console.export_text()


def test_a_folder_run_before_precise_bn_is_not_resumed_with_it(tmp_path, csv_dataset, capsys):
    import yaml

    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", csv_dataset, train={"epochs": 1})
    assert run_cli(["run", cfg, "--out", out, "--quiet"], capsys)[0] == 0
    stored = yaml.safe_load((out / "config.yaml").read_text())
    del stored["train"]["precise_bn"]  # as written by a version without the setting
    (out / "config.yaml").write_text(yaml.safe_dump(stored))
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet"], capsys)
    assert code == 2 and "different 'train' section" in err
    code, _, err = run_cli(["run", cfg, "--out", out, "--quiet", "train.precise_bn=0"], capsys)
    assert code == 0, err


def test_the_readmes_config_example_is_a_valid_config(tmp_path):
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"```yaml\n(dataset:\n  name: synth-mri.*?)```", readme, re.S).group(1)
    (tmp_path / "readme.yaml").write_text(block)
    cfg = load_config(tmp_path / "readme.yaml")
    assert cfg.train.num_threads == 1 and cfg.train.precise_bn == 1024
    assert cfg.dataset.image_size == 64 and [m.name for m in cfg.methods][-1] == "dro-strong"


def test_debias_says_when_swift_kept_the_input_model(monkeypatch):
    from rich.console import Console

    import shortcutlab.cli as cli

    console = Console(width=120, record=True)
    monkeypatch.setattr(cli, "out_console", console)
    rows = [[m, 0, "val", "y", "accuracy", 0.9] for m in ("erm", "erm+swift")]
    results = pd.DataFrame(rows, columns=["method", "seed", "split", "target", "metric", "value"])
    compute = {"attribute": "site", "selected": "input", "samples_fraction": None}
    cli._print_before_after(results, compute)
    assert "selected: input" in console.export_text()


def test_precise_bn_uses_the_methods_sampling_distribution(tmp_path):
    import torch

    from shortcutlab.experiment.context import Context
    from shortcutlab.methods import TaskInfo, get_method
    from shortcutlab.models import build_model
    from shortcutlab.store.layout import RunLayout

    n = 1000
    g = torch.tensor([0] * 900 + [1] * 100)
    x = torch.where(g[:, None, None, None] == 1, 200, 20).to(torch.uint8).expand(n, 1, 16, 16)
    tensors = {"x": x.contiguous(), "y": g.clone(), "z": g[:, None].clone(), "g": g * 3}
    info = TaskInfo(num_classes=2, attributes=["a"], attribute_cardinalities=[2], image_size=16)
    torch.manual_seed(0)
    method = get_method("rebalance")(
        build_model("small-cnn", 1, 2, 16, 8), info, get_method("rebalance").hparam_defaults()
    )
    ctx = Context(
        train=tensors,
        val=tensors,
        info=info,
        layout=RunLayout.single(tmp_path, "rebalance", 0),
        device=torch.device("cpu"),
        seed=0,
        batch_size=100,
        precise_bn=1000,
    )
    conv, bn = method.model.encoder.conv[0], method.model.encoder.conv[1]
    with torch.no_grad():
        means = [conv(x[g == k][:1].float() / 255).mean((0, 2, 3)) for k in (0, 1)]
    balanced, uniform = (means[0] + means[1]) / 2, 0.9 * means[0] + 0.1 * means[1]
    ctx.recalibrate_bn(method, tensors, ctx.sampling_weights(method, tensors))
    weighted = bn.running_mean.clone()
    ctx.recalibrate_bn(method, tensors)
    assert torch.allclose(bn.running_mean, uniform, atol=1e-4)
    assert (weighted - balanced).abs().max() < 0.15 * (uniform - balanced).abs().max()
