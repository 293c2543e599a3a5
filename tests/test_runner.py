import numpy as np
import pandas as pd
import pytest
import torch

from shortcutlab.data.sources import make_synthetic
from shortcutlab.experiment import runner
from shortcutlab.experiment.config import ExperimentConfig


def _cfg(**train):
    return ExperimentConfig.model_validate(
        {
            "dataset": {"name": "synth-cxr", "size": 400, "image_size": 32, "attributes": ["site"]},
            "methods": ["erm"],
            "bootstrap": 0,
            "train": {"epochs": 2, "batch_size": 32, "feature_dim": 16, **train},
        }
    )


def test_synthetic_dataset_realises_the_design_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path))  # a cache of this test's own
    a = make_synthetic("synth-cxr", 800, ["site"], 0.9, seed=3, image_size=32)
    meta = a.meta
    train = meta[meta.split == "train"]
    inv = meta[meta.split == "inv"]
    assert (train.site == train.y).mean() == pytest.approx(0.9, abs=0.01)
    assert (inv.site == inv.y).mean() == pytest.approx(0.1, abs=0.02)
    assert a.masks is not None and a.masks.shape == (800, 32, 32)
    files = list(tmp_path.glob("synth-cxr-*.npz"))
    assert len(files) == 1
    b = make_synthetic("synth-cxr", 800, ["site"], 0.9, seed=3, image_size=32)
    assert np.array_equal(a.images, b.images)
    files[0].write_bytes(b"corrupt")  # a damaged cache entry is regenerated, not trusted
    c = make_synthetic("synth-cxr", 800, ["site"], 0.9, seed=3, image_size=32)
    assert np.array_equal(a.images, c.images)


def test_cache_is_not_reused_after_the_renderer_changes(tmp_path, monkeypatch):
    import shortcutlab.data.synthetic as synthetic

    monkeypatch.setenv("SHORTCUTLAB_CACHE", str(tmp_path))
    make_synthetic("synth-cxr", 200, ["site"], 0.9, seed=3, image_size=32)
    monkeypatch.setattr(synthetic, "renderer_fingerprint", lambda: "another-version")
    make_synthetic("synth-cxr", 200, ["site"], 0.9, seed=3, image_size=32)
    assert len(list(tmp_path.glob("synth-cxr-*.npz"))) == 2


def test_model_selection_looks_at_val_only(tmp_path, monkeypatch):
    cfg = _cfg()
    table = runner.load_dataset(cfg.dataset)
    seen = []
    real = runner.selection_score

    def spy(rule, probs, y, g, n):
        seen.append(len(y))
        return real(rule, probs, y, g, n)

    monkeypatch.setattr(runner, "selection_score", spy)
    runner.train_one(table, cfg, cfg.methods[0], 0, tmp_path / "run")
    n_val = int((table.meta.split == "val").sum())
    # every epoch: the rule's score and the val average (the tie-break), both on val alone
    assert seen == [n_val] * (2 * cfg.train.epochs)


def test_holdout_is_disjoint_and_stratified():
    table = make_synthetic("synth-cxr", 1000, ["site"], 0.9, image_size=32).split("train")
    keep, hold = runner.carve_holdout(table, 0.1, seed=0)
    assert len(np.intersect1d(keep, hold)) == 0
    assert len(keep) + len(hold) == len(table)
    g = table.group_ids()
    for gid in np.unique(g):
        share = np.isin(np.flatnonzero(g == gid), hold).mean()
        assert share == pytest.approx(0.1, abs=0.05)


def test_same_seed_same_result(tmp_path):
    cfg = _cfg(epochs=1)
    table = runner.load_dataset(cfg.dataset)
    a = runner.train_one(table, cfg, cfg.methods[0], 5, tmp_path / "a")
    b = runner.train_one(table, cfg, cfg.methods[0], 5, tmp_path / "b")
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy())


def test_bf16_autocast_trains(tmp_path, monkeypatch):
    cfg = _cfg(epochs=1, bf16=True)
    table = runner.load_dataset(cfg.dataset)
    seen = []  # (training mode, output dtype) of every conv and linear layer call
    build = runner.build_method

    def build_with_hooks(*args, **kwargs):
        method = build(*args, **kwargs)
        for layer in method.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                layer.register_forward_hook(
                    lambda mod, _inputs, out: seen.append((mod.training, out.dtype))
                )
        return method

    monkeypatch.setattr(runner, "build_method", build_with_hooks)
    res = runner.train_one(table, cfg, cfg.methods[0], 0, tmp_path / "r")
    assert np.isfinite(res["value"].dropna()).all()
    # the weights stay float32; under autocast every conv / linear computes in bf16
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.bfloat16}


def test_train_one_leaves_the_callers_thread_count_alone(tmp_path):
    cfg = _cfg(epochs=1, num_threads=1)
    table = runner.load_dataset(cfg.dataset)
    torch.set_num_threads(2)
    runner.train_one(table, cfg, cfg.methods[0], 0, tmp_path / "run")
    assert torch.get_num_threads() == 2


def test_one_run_at_a_time_per_output_folder(tmp_path):
    import socket
    import subprocess
    import sys

    from shortcutlab.errors import ShortcutlabError

    out = tmp_path / "run"
    out.mkdir()
    lock = out / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(f"{socket.gethostname()} {holder.pid}")
        with pytest.raises(ShortcutlabError, match=f"process {holder.pid}"):
            runner.run_experiment(_cfg(epochs=1), out)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing touched
    finally:
        holder.kill()
        holder.wait()
    lock.write_text("another-machine 1")  # never guessed about: it may be alive over there
    with pytest.raises(ShortcutlabError, match="delete"):
        runner.run_experiment(_cfg(epochs=1), out)
    # a lock whose process has ended on this machine is stale: taken over, released after
    lock.write_text(f"{socket.gethostname()} {holder.pid}")
    runner.run_experiment(_cfg(epochs=1), out)
    assert (out / "results.csv").exists() and not lock.exists()


def test_an_interrupted_run_continues_from_its_last_epoch_with_the_same_numbers(tmp_path):
    """Ctrl-C in epoch 1: the re-run continues from epoch 0's checkpoint (resume.pt), and the
    result is the uninterrupted run's, for a method with state outside its weights (MIMM-X's
    DLS epoch and its critic's own stream of fresh batches)."""
    import json

    from shortcutlab.store.layout import ExperimentLayout

    spec = {
        "name": "mimmx-fresh",
        "method": "mimmx",
        "params": {"f_y_dim": 2, "f_z_dim": 2, "critic_batches": "fresh", "n_b": 3}
        | {"audit_steps": 0, "audit_epoch_steps": 0},  # no fresh critics: faster
    }
    cfg = ExperimentConfig.model_validate({**_cfg().model_dump(), "methods": [spec]})

    def interrupt(label, done, total):
        if ":" not in label and done * 2 > total:  # the first step of epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(cfg, tmp_path / "cut", progress=interrupt)
    run = ExperimentLayout(tmp_path / "cut").run("mimmx-fresh", 0)
    assert run.file("resume.pt").exists() and not run.done.exists()
    resumed = runner.run_experiment(cfg, tmp_path / "cut")
    done = json.loads(run.done.read_text())
    assert done["compute"]["resumed_from_epoch"] == 0
    assert not run.file("resume.pt").exists()
    assert [e["epoch"] for e in run.read_log()] == [0, 1]
    whole = runner.run_experiment(cfg, tmp_path / "whole")
    # epoch 1's losses too (the selected epoch may be 0, whose weights the checkpoint held)
    cut, whole_log = (
        pd.DataFrame(ExperimentLayout(tmp_path / d).run("mimmx-fresh", 0).read_log())
        for d in ("cut", "whole")
    )
    pd.testing.assert_frame_equal(cut.drop(columns="seconds"), whole_log.drop(columns="seconds"))
    keys = ["split", "target", "metric"]
    a, b = (f.sort_values(keys).reset_index(drop=True) for f in (resumed, whole))
    np.testing.assert_allclose(a["value"].to_numpy(), b["value"].to_numpy(), rtol=1e-6)


def test_a_resumed_run_keeps_its_log_on_disk_while_it_sets_up(tmp_path, monkeypatch):
    """The log of the finished epochs is on disk before the resumed run restores its checkpoint:
    a process killed (not Ctrl-C) during the restore or its first epoch loses none of it."""
    from shortcutlab.experiment.config import MethodSpec
    from shortcutlab.store.layout import RunLayout

    cfg = _cfg(epochs=2)
    table = runner.load_dataset(cfg.dataset)
    layout = RunLayout.single(tmp_path / "run", "erm", 0)
    spec = MethodSpec(name="erm", method="erm", params={})

    def interrupt(label, done, total):
        if done * 2 > total:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.train_one(table, cfg, spec, 0, layout, interrupt, resume=True)
    assert [e["epoch"] for e in layout.read_log()] == [0]
    on_disk = []
    restore = runner._restore

    def watch(*args, **kwargs):
        on_disk.append([e["epoch"] for e in layout.read_log()])
        return restore(*args, **kwargs)

    monkeypatch.setattr(runner, "_restore", watch)
    runner.train_one(table, cfg, spec, 0, layout, resume=True)
    assert on_disk == [[0]]
    assert [e["epoch"] for e in layout.read_log()] == [0, 1]


def test_an_epoch_checkpoint_of_other_hyperparameters_is_not_continued(tmp_path):
    """A method entry edited after an interruption: its run starts over, with a clean log."""
    import json

    from shortcutlab.experiment.config import MethodSpec
    from shortcutlab.store.layout import RunLayout

    cfg = _cfg(epochs=2)
    table = runner.load_dataset(cfg.dataset)
    layout = RunLayout.single(tmp_path / "run", "erm", 0)

    def interrupt(label, done, total):
        if done * 2 > total:
            raise KeyboardInterrupt

    first = MethodSpec(name="erm", method="erm", params={"lr": 1e-3})
    with pytest.raises(KeyboardInterrupt):
        runner.train_one(table, cfg, first, 0, layout, interrupt, resume=True)
    assert layout.file("resume.pt").exists()
    edited = MethodSpec(name="erm", method="erm", params={"lr": 3e-3})
    runner.train_one(table, cfg, edited, 0, layout, resume=True)
    assert "resumed_from_epoch" not in json.loads(layout.done.read_text())["compute"]
    assert [e["epoch"] for e in layout.read_log()] == [0, 1]
