import json

import numpy as np
import pytest

from comp.errors import CompError
from comp.decisions import apply_thresholds, expected_grade, fit_thresholds, nested_threshold_predictions
from comp.metrics import quadratic_weighted_kappa
from comp.run.folder import RunDir
from comp.run.thresholds import load_thresholds, save_thresholds


def _ordinal_data(seed=0, n=600, k=5):
    """Probabilities from a noisy latent grade, biased towards the majority grade 0."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=[0.45, 0.15, 0.2, 0.12, 0.08])
    latent = y + rng.normal(0, 0.9, n)
    logits = -((np.arange(k)[None, :] - latent[:, None]) ** 2) / 1.5
    logits[:, 0] += 0.8  # over-predicts the majority class, as imbalanced training does
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_thresholds_beat_argmax_and_initial_cuts(seed):
    y, probs = _ordinal_data(seed)
    grade = expected_grade(probs)
    cuts = fit_thresholds(grade, y, 5)
    assert len(cuts) == 4 and np.all(np.diff(cuts) > 0)
    fitted = quadratic_weighted_kappa(y, apply_thresholds(grade, cuts), 5)
    argmax = quadratic_weighted_kappa(y, probs.argmax(1), 5)
    initial = quadratic_weighted_kappa(y, apply_thresholds(grade, np.arange(4) + 0.5), 5)
    assert fitted >= argmax and fitted >= initial
    assert fitted > argmax + 0.01  # a real gain on biased probabilities, not a tie


def test_fit_recovers_shifted_cuts_from_a_regression_grade():
    # A regression output on another scale: grade = 2·y + 1 + noise; the right cuts are ~2, 4, 6.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 800)
    score = 2.0 * y + 1.0 + rng.normal(0, 0.4, 800)
    cuts = fit_thresholds(score, y, 4)
    np.testing.assert_allclose(cuts, [2, 4, 6], atol=0.35)
    assert quadratic_weighted_kappa(y, apply_thresholds(score, cuts), 4) > 0.97
    # Never worse than a fine grid search over each cut alone (the fit is a coordinate optimum).
    best = quadratic_weighted_kappa(y, apply_thresholds(score, cuts), 4)
    for i in range(3):
        for value in np.linspace(cuts[i - 1] if i else -2, cuts[i + 1] if i < 2 else 10, 200)[1:-1]:
            trial = cuts.copy()
            trial[i] = value
            assert quadratic_weighted_kappa(y, apply_thresholds(score, trial), 4) <= best + 1e-12


def test_fit_edge_cases_keep_the_initial_cuts():
    # Already perfect: nothing to gain, the starting cuts stay.
    y = np.array([0, 1, 2, 0, 1, 2])
    cuts = fit_thresholds(y.astype(float), y, 3)
    assert quadratic_weighted_kappa(y, apply_thresholds(y.astype(float), cuts), 3) == 1.0
    np.testing.assert_allclose(fit_thresholds(np.array([]), np.array([], int), 3), [0.5, 1.5])
    assert fit_thresholds(np.array([0.3, 0.1]), np.array([0, 0]), 1).shape == (0,)
    # Non-finite scores are ignored, not propagated into the cuts.
    score = np.array([0.1, 0.9, 2.2, np.nan, 1.4, np.inf])
    cuts = fit_thresholds(score, np.array([0, 1, 2, 2, 1, 0]), 3)
    assert np.isfinite(cuts).all() and np.all(np.diff(cuts) > 0)


def test_apply_and_expected_grade():
    assert list(apply_thresholds(np.array([0.2, 0.5, 0.7, 1.6, 9.0, -3]), np.array([0.5, 1.5]))) == [0, 1, 1, 2, 2, 0]
    np.testing.assert_allclose(expected_grade(np.array([[0.5, 0.5, 0.0], [0, 0, 1.0], [0.2, 0.3, 0.5]])),
                               [0.5, 2.0, 1.3])


def test_file_round_trip_and_errors(tmp_path):
    save_thresholds(tmp_path, np.array([0.4, 1.7]))
    np.testing.assert_allclose(load_thresholds(tmp_path), [0.4, 1.7])
    assert json.loads(RunDir(tmp_path).thresholds_path.read_text()) == {"cuts": [0.4, 1.7]}
    with pytest.raises(CompError, match="not found"):
        load_thresholds(tmp_path / "nowhere")
    RunDir(tmp_path).thresholds_path.write_text("{not json")
    with pytest.raises(CompError, match="damaged"):
        load_thresholds(tmp_path)
    RunDir(tmp_path).thresholds_path.write_text('{"cuts": [1.5, 0.5]}')
    with pytest.raises(CompError, match="increasing"):
        load_thresholds(tmp_path)



def test_the_fitted_decision_file_is_one_format(tmp_path):
    """thresholds.json is read and written only through comp.run.thresholds: a binary threshold,
    cut points, and a decision inherited from an init_from run, each read back as it was written."""
    from comp.run.thresholds import (FittedDecision, inherit_decision, load_binary_threshold, read_decision,
                                     save_binary_threshold)

    save_binary_threshold(tmp_path, 0.25, "sick", "f1")
    assert json.loads(RunDir(tmp_path).thresholds_path.read_text()) == {"threshold": 0.25, "positive": "sick",
                                                                         "metric": "f1"}
    assert load_binary_threshold(tmp_path) == (0.25, "sick")
    saved = read_decision(tmp_path)
    assert (saved.fitted_rule, saved.describe()) == ("threshold", "P(sick) >= 0.250")
    assert FittedDecision.from_json(saved.to_json()) == saved
    save_thresholds(tmp_path, np.array([0.5, 1.25]))
    assert read_decision(tmp_path) == FittedDecision(cuts=(0.5, 1.25))
    assert read_decision(tmp_path).describe() == "ordinal thresholds 0.50, 1.25"
    RunDir(tmp_path).thresholds_path.write_text('{"threshold": 0.3}')  # no positive class: damaged
    assert read_decision(tmp_path) is None
    RunDir(tmp_path).thresholds_path.write_text("{}")
    assert read_decision(tmp_path).fitted_rule is None
    # A decision copied from another run is marked with that run's name and its [predict] decision.
    from comp.recipe import recipe_from_dict
    from comp.run.folder import RunInfo

    source = RunDir(tmp_path / "step1")
    source.path.mkdir()
    source.write_info(RunInfo(name="step1", recipe_file="s.toml", overrides=[], classes=["0", "1", "2"],
                              scheme="kfold", folds=[0, 1]))
    source.write_recipe(recipe_from_dict({"name": "step1", "predict": {"decision": "ordinal_thresholds"}}))
    save_thresholds(source.path, np.array([0.7, 1.6]))
    target = tmp_path / "step2"
    target.mkdir()
    copied = inherit_decision(target, source.path)
    assert copied == FittedDecision(cuts=(0.7, 1.6), inherited_from="step1", rule="ordinal_thresholds")
    assert json.loads(RunDir(target).thresholds_path.read_text()) == {
        "cuts": [0.7, 1.6], "from": "step1", "rule": "ordinal_thresholds"}
    assert read_decision(target) == copied
    np.testing.assert_allclose(load_thresholds(target), [0.7, 1.6])

def test_nested_thresholds_cut_each_fold_with_the_other_folds_cuts():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 300)
    scores = y + rng.normal(0.3, 0.8, 300)  # shifted: fitted cuts differ from the midpoints
    folds = np.arange(300) % 3
    got = nested_threshold_predictions(scores, y, folds, 4)
    for f in range(3):
        held = folds == f
        cuts = fit_thresholds(scores[~held], y[~held], 4)
        assert np.array_equal(got[held], apply_thresholds(scores[held], cuts))
        # ...and not the cuts fitted with the held-out rows included
        assert not np.allclose(cuts, fit_thresholds(scores, y, 4))
    # Fitted on the rows it is scored on, QWK is at least the nested estimate here.
    in_sample = quadratic_weighted_kappa(y, apply_thresholds(scores, fit_thresholds(scores, y, 4)), 4)
    assert in_sample >= quadratic_weighted_kappa(y, got, 4)


def test_nested_thresholds_need_two_folds():
    y = np.array([0, 1, 2, 1, 0, 2])
    assert nested_threshold_predictions(y + 0.1, y, np.zeros(6, dtype=int), 3) is None
