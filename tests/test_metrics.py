import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shortcutlab.data.grouping import Grouper
from shortcutlab.evaluation.metrics import (
    bootstrap_ci,
    evaluate_split,
    expected_calibration_error,
    fairness_gaps,
    selection_score,
)


def _rows_to_dict(rows):
    return {(r["target"], r["metric"]): r["value"] for r in rows}


def test_group_and_worst_group_accuracy_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    z = np.array([[0], [1], [1], [0], [1], [0]])
    pred = np.array([0, 1, 1, 0, 1, 0])
    probs = np.eye(2)[pred] * 0.8 + 0.1
    d = _rows_to_dict(evaluate_split("val", probs, y, z, Grouper(2, ("sex",), (2,)), n_boot=0))
    assert d[("y", "accuracy")] == pytest.approx(4 / 6)
    assert d[("y", "group_accuracy[y=0,sex=0]")] == 1.0  # rows 0, 5
    assert d[("y", "group_accuracy[y=0,sex=1]")] == 0.0  # row 1
    assert d[("y", "group_accuracy[y=1,sex=0]")] == 0.0  # row 3
    assert d[("y", "group_accuracy[y=1,sex=1]")] == 1.0  # rows 2, 4
    assert d[("y", "worst_group_accuracy")] == 0.0
    assert d[("y", "auroc")] == pytest.approx(roc_auc_score(y, probs[:, 1]))


def test_fairness_gaps_match_hand_computed_rates():
    # group a=0: y=[1,1,0,0], pred=[1,0,0,0] -> TPR 0.5, FPR 0, selection 0.25
    # group a=1: y=[1,1,0,0], pred=[1,1,1,0] -> TPR 1.0, FPR 0.5, selection 0.75
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    gaps = fairness_gaps(y, pred, a)
    assert gaps["dp_gap"] == pytest.approx(0.5)
    assert gaps["eopp_gap"] == pytest.approx(0.5)
    assert gaps["eodds_gap"] == pytest.approx(0.5)  # max(|dTPR|, |dFPR|)


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # bin 0.9: acc 0.5 conf 0.9; bin 0.6: acc 1.0 conf 0.6 -> 0.5*0.4 + 0.5*0.4
    assert expected_calibration_error(probs, y) == pytest.approx(0.4)


def test_bootstrap_ci_brackets_the_mean():
    values = (np.random.default_rng(0).random(500) < 0.7).astype(float)
    lo, hi = bootstrap_ci(values, 300, seed=1)
    assert lo < values.mean() < hi
    assert hi - lo < 0.12


def test_selection_score_rules():
    y = np.array([0, 0, 0, 1])
    g = np.array([0, 0, 0, 1])
    probs = np.eye(2)[np.array([0, 0, 0, 0])]
    assert selection_score("val_average", probs, y, g, 2) == 0.75
    assert selection_score("val_worst_group", probs, y, g, 2) == 0.0
    # mean of the group accuracies (1 and 0), not of the images
    assert selection_score("val_group_average", probs, y, g, 2) == 0.5
    g3 = np.array([0, 0, 1, 2])  # three groups: accuracies 1, 1, 0
    assert selection_score("val_group_average", probs, y, g3, 4) == pytest.approx(2 / 3)
