import numpy as np
import pytest
from scipy.stats import norm

from shortcutlab.data.grouping import Grouper
from shortcutlab.evaluation.metrics import (
    auroc,
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
    # scores 0.9 / 0.1; positives (rows 2, 3, 4) against negatives (0, 1, 5), ties count 1/2:
    # 0.9 -> 1 + 1/2 + 1, 0.1 -> 1/2 + 0 + 1/2, 0.9 -> 5/2: 6 of 9 pairs
    assert d[("y", "auroc")] == pytest.approx(6 / 9)


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


def test_auroc_counts_concordant_pairs_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1])
    score = np.array([0.1, 0.4, 0.8, 0.35, 0.8, 0.9])
    probs = np.stack([1 - score, score], axis=1)
    # positives 0.35, 0.8, 0.9 against negatives 0.1, 0.4, 0.8 (a tie counts 1/2):
    # 0.35 beats 1, 0.8 beats 2 and ties 1, 0.9 beats 3 -> 6.5 of 9 pairs
    assert auroc(probs, y) == pytest.approx(6.5 / 9)
    assert np.isnan(auroc(probs, np.ones(6, int)))  # one class present: undefined


def test_auroc_multiclass_is_the_macro_mean_of_one_vs_rest_by_hand():
    y = np.array([0, 0, 0, 1, 1, 2])  # unequal classes: macro, weighted and one-vs-one differ
    probs = np.array(
        [
            [0.6, 0.3, 0.1],
            [0.5, 0.2, 0.3],
            [0.3, 0.3, 0.4],
            [0.2, 0.5, 0.3],
            [0.4, 0.4, 0.2],
            [0.1, 0.4, 0.5],
        ]
    )
    # class 0: positives 0.6, 0.5, 0.3 against 0.2, 0.4, 0.1 -> 3 + 3 + 2 = 8/9
    # class 1: positives 0.5, 0.4 against 0.3, 0.2, 0.3, 0.4 -> 4 + (3 + 1/2) = 7.5/8
    # class 2: positive 0.5 against 0.1, 0.3, 0.4, 0.3, 0.2 -> 5/5
    assert auroc(probs, y) == pytest.approx((8 / 9 + 7.5 / 8 + 5 / 5) / 3)


def _bernoulli(n: int, ones: int, seed: int = 0) -> np.ndarray:
    """``n`` zeros and ones with exactly ``ones`` ones, shuffled."""
    values = np.zeros(n)
    values[:ones] = 1
    np.random.default_rng(seed).shuffle(values)
    return values


@pytest.mark.parametrize("n,p", [(400, 0.3), (400, 0.5), (300, 0.8)])
def test_bootstrap_ci_width_is_near_the_normal_approximation(n, p):
    values = _bernoulli(n, round(p * n))
    lo, hi = bootstrap_ci(values, 2000, seed=1)
    normal = 2 * norm.ppf(0.975) * np.sqrt(p * (1 - p) / n)
    assert hi - lo == pytest.approx(normal, rel=0.08)
    assert lo < p < hi and (p - lo) == pytest.approx(hi - p, rel=0.2)  # about symmetric


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_mean, hits = 0.3, 0
    for i in range(200):
        values = (rng.random(100) < true_mean).astype(float)
        lo, hi = bootstrap_ci(values, 500, seed=i)
        hits += lo <= true_mean <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_bootstrap_ci_level_sets_the_width_by_the_normal_quantiles():
    values = _bernoulli(400, 120)
    lo50, hi50 = bootstrap_ci(values, 2000, seed=2, level=0.5)
    lo95, hi95 = bootstrap_ci(values, 2000, seed=2, level=0.95)
    assert lo95 < lo50 < values.mean() < hi50 < hi95
    expected = norm.ppf(0.75) / norm.ppf(0.975)  # 0.674 / 1.960
    assert (hi50 - lo50) / (hi95 - lo95) == pytest.approx(expected, abs=0.04)


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
