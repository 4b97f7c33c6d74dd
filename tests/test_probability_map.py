"""Feature -> probability maps (clibd_cli/classification/probability_map.py)."""

import numpy as np
import pytest

from clibd_cli.classification.probability_map import apply_map, fit_map


def test_a_map_reads_its_logistic_score_through_the_isotonic_step():
    """The confidence is the isotonic step's value at the logistic score, not the score itself."""
    flat = {"mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0, "iso_x": [0.0, 1.0], "iso_y": [0.2, 0.2]}
    assert apply_map(flat, np.array([[-3.0], [0.0], [3.0]])) == pytest.approx([0.2, 0.2, 0.2])
    plain = {**flat, "iso_x": [], "iso_y": []}  # no isotonic step: the logistic score
    assert apply_map(plain, np.array([[0.0]])) == pytest.approx([0.5])


def test_the_isotonic_step_pools_what_goes_down():
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    fit = fit_map(x, np.array([0.0, 1.0, 0.0, 1.0]), np.ones(4), 1e-6)
    assert fit["iso_y"] == pytest.approx([0.0, 0.5, 1.0])  # the middle two pooled, the whole non-decreasing


def test_a_map_fitted_on_nothing_is_never_confident():
    fit = fit_map(np.zeros((0, 2)), np.zeros(0), np.zeros(0), 1.0)
    assert apply_map(fit, np.array([[5.0, 5.0], [-5.0, 0.0]])) == pytest.approx([0.0, 0.0])


def test_the_logistic_step_weighs_each_example():
    """A query kind's examples weighed three to one (``species_weight``) move the logistic fit too."""
    from clibd_cli.classification.probability_map import sigmoid

    fit = fit_map(np.zeros((2, 1)), np.array([1.0, 0.0]), np.array([3.0, 1.0]), 1.0)
    assert sigmoid(fit["intercept"]) == pytest.approx(0.75, abs=1e-6)
    # the log-loss that picks the temperature (fitting.py) weighs them too: 3 * -log 0.75 + 1 * -log 0.25
    assert fit["loss"] == pytest.approx(-3 * np.log(0.75) - np.log(0.25), abs=1e-5)


def test_a_map_depends_on_the_ratios_of_the_weights_not_their_scale():
    """The ridge is as strong whatever unit the weights come in (query kinds weigh in counts)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] + rng.normal(size=60) > 0).astype(float)
    w = rng.uniform(0.5, 2.0, size=60)
    one, ten = fit_map(x, y, w, 1.0), fit_map(x, y, 10 * w, 1.0)
    assert ten["coef"] == pytest.approx(one["coef"], abs=1e-6)
    assert ten["intercept"] == pytest.approx(one["intercept"])


def test_a_map_with_isotonic_steps_of_two_lengths_is_refused():
    """A damaged calibration is named when the index is opened, not met in np.interp at classify time."""
    from clibd_cli.classification.probability_map import check_map

    fit = {"mean": [0.0], "scale": [1.0], "coef": [1.0], "intercept": 0.0,
           "iso_x": [0.0, 1.0], "iso_y": [0.2, 0.2]}
    check_map(fit, 1)
    with pytest.raises(ValueError, match="wrong length"):
        check_map({**fit, "iso_y": [0.2]}, 1)


def test_far_scores_give_zero_and_one_without_an_overflow_warning():
    import warnings

    from clibd_cli.classification.probability_map import sigmoid

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == pytest.approx([0.0, 1.0])
