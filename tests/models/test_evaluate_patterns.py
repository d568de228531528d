"""The figures behind the unmeasured-items table (models.evaluate): the AUC expected against
the true probabilities, and the standard error of a paired AUC drop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.evaluate import expected_auc, paired_auc_drop_se


def test_the_expected_auc_is_the_auc_over_outcomes_drawn_from_the_truth():
    rng = np.random.default_rng(0)
    n = 400
    latent = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(latent - 2.5)))
    score = np.round(latent + rng.normal(scale=0.7, size=n), 1)  # ties count ½
    draws = []
    for _ in range(2_000):
        y = rng.random(n) < p
        draws.append(roc_auc_score(y, score))
    assert expected_auc(score, p) == pytest.approx(np.mean(draws), abs=0.003)
    # with certain outcomes it is the ordinary AUC
    y = (rng.random(n) < p).astype(float)
    assert expected_auc(score, y) == pytest.approx(roc_auc_score(y, score))
    assert np.isnan(expected_auc(score, np.zeros(n)))


def test_a_drop_from_few_events_has_the_larger_standard_error():
    """The same two scores, the masked one noisier: the drop's standard error shrinks about
    as one over the root of the residents, and matches the spread of the drop over wards."""
    rng = np.random.default_rng(1)

    def ward(n):
        latent = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(2 * latent - 3.5)))).astype(float)
        return y, latent, latent + rng.normal(scale=1.0, size=n)

    small = [ward(400) for _ in range(200)]
    drops = [roc_auc_score(y, f) - roc_auc_score(y, m) for y, f, m in small]
    se_small = np.median([paired_auc_drop_se(*w) for w in small[:10]])
    assert se_small == pytest.approx(np.std(drops), rel=0.3)
    se_large = paired_auc_drop_se(*ward(6_400))
    assert se_large == pytest.approx(se_small / 4, rel=0.35)
    y, f, m = ward(50)
    y[:] = 0.0
    y[0] = 1.0
    assert np.isnan(paired_auc_drop_se(y, f, m))  # one case: nothing to resample
