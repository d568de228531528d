"""Compiled tree prediction (models.compiled): LightGBM's bits, from a cache, or LightGBM."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.build import to_matrix
from models.compiled import _ZERO, attach, boosters_of, check_rows, compiled_for, detach


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype="float64").view(np.int64)


@pytest.fixture(scope="module")
def compiled(trained, tmp_path_factory):
    cache = tmp_path_factory.mktemp("compiled") / "cache"
    engine = trained.engine
    X = to_matrix(trained.features, engine.feature_names)
    want = (engine.predict_proba(X), engine.predict_values(X),
            engine.contributions(X[:300], engine.outcomes[0]))  # fmt: skip
    report = attach(engine, cache)
    yield engine, X, want, report, cache
    detach(engine)


def test_every_booster_of_the_engine_predicts_compiled_with_lightgbms_bits(compiled, monkeypatch):
    """Every booster (risk, forecast quantiles, glucose-pattern sub-engines) is compiled, the
    engine's risks and forecasts come from the compiled code alone (LightGBM's ``predict``
    fails but for SHAP), and risks, forecasts and SHAP are the same bits as LightGBM's."""
    engine, X, (risk, values, shap), report, _ = compiled
    lightgbm_predict = lgb.Booster.predict

    def shap_only(self, data, *args, **kwargs):
        assert kwargs.get("pred_contrib"), "a prediction went to LightGBM"
        return lightgbm_predict(self, data, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", shap_only)
    labels = [label for label, _, _ in boosters_of(engine)]
    assert report.on_lightgbm == {} and report.used == len(labels)
    assert any("/" in label for label in labels)  # the sub-engines are in
    for label, b, it in boosters_of(engine):
        raw = "_p" not in label
        assert compiled_for(b, it, raw_score=raw) is not None, label
    assert np.array_equal(_bits(engine.predict_proba(X).to_numpy()), _bits(risk.to_numpy()))
    assert np.array_equal(_bits(engine.predict_values(X).to_numpy()), _bits(values.to_numpy()))
    # SHAP stays LightGBM's own
    again = engine.contributions(X[:300], engine.outcomes[0]).to_numpy()
    assert np.array_equal(_bits(again), _bits(shap.to_numpy()))


def test_compiled_boosters_agree_on_the_edges_of_every_split(compiled):
    """On values at and just above each threshold, zeros, LightGBM's near-zeros and missing
    values, each compiled booster gives LightGBM's raw score to the bit."""
    engine, _, _, _, _ = compiled
    rows = check_rows(engine, n=2_000, seed=7)
    for label, b, it in boosters_of(engine):
        want = b.predict(rows, num_iteration=it, raw_score=True, num_threads=1)
        got = compiled_for(b, it, raw_score=True).predict(rows, n_jobs=1)
        assert np.array_equal(_bits(want), _bits(got)), label


def test_a_second_attach_loads_every_booster_from_the_cache(compiled, trained):
    engine, X, (risk, _, _), first, cache = compiled
    assert first.compiled == first.used and first.cached == 0
    again = attach(engine, cache)
    assert again.cached == first.used and again.compiled == 0
    assert cache.stat().st_mode & 0o777 == 0o700
    files = list(cache.iterdir())  # code this process runs: the owner's alone
    assert len(files) == first.used and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert np.array_equal(_bits(engine.predict_proba(X).to_numpy()), _bits(risk.to_numpy()))


def _zero_split_booster() -> tuple[lgb.Booster, np.ndarray]:
    """A booster whose splits around zero sit at LightGBM's −1e-35 (a feature that is exactly
    0 for a third of the rows; label: not negative)."""
    rng = np.random.default_rng(3)
    x = rng.choice([-1.0, 0.0, 1.0], size=3_000) * rng.random(3_000)
    y = (x >= 0).astype(float)
    X = np.column_stack([x, rng.random(3_000)])
    params = {"objective": "binary", "verbose": -1, "num_leaves": 4, "min_data_in_leaf": 5}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=5), X


def test_values_within_lightgbms_zero_band_go_where_lightgbm_sends_them(tmp_path):
    """LightGBM reads |value| ≤ 1e-35 as 0; a split at −1e-35 must send −1e-35 and 5e-36 the
    way it sends 0, in the compiled booster too."""
    booster, X = _zero_split_booster()
    text = booster.model_to_string()
    thresholds = [float(v) for ln in text.splitlines() if ln.startswith("threshold=")
                  for v in ln.split("=", 1)[1].split()]  # fmt: skip
    assert -_ZERO in thresholds  # the case is really there

    class One:  # the smallest engine attach() takes
        feature_names = ["x", "noise"]
        boosters = {"y": booster}
        best_iteration = {"y": booster.current_iteration()}

    engine = One()
    report = attach(engine, tmp_path)
    assert report.used == 1, report.on_lightgbm
    edge = np.array([[-_ZERO, 0.5], [_ZERO, 0.5], [-5e-36, 0.5], [5e-36, 0.5], [0.0, 0.5],
                     [np.nextafter(-_ZERO, -1), 0.5], [np.nextafter(_ZERO, 1), 0.5]])  # fmt: skip
    it = booster.current_iteration()
    want = booster.predict(edge, raw_score=True, num_threads=1)
    got = compiled_for(booster, it, raw_score=True).predict(edge, n_jobs=1)
    assert np.array_equal(_bits(want), _bits(got))
    detach(engine)


def test_a_booster_whose_output_is_not_its_raw_score_stays_on_lightgbm_for_predictions(tmp_path):
    """Poisson's prediction is exp(raw): the compiled raw score is used only for raw calls."""
    rng = np.random.default_rng(4)
    X = rng.random((500, 2))
    booster = lgb.train({"objective": "poisson", "verbose": -1},
                        lgb.Dataset(X, rng.poisson(3 * X[:, 0])), num_boost_round=3)  # fmt: skip

    class One:
        feature_names = ["a", "b"]
        boosters = {"y": booster}
        best_iteration = {"y": 3}

    report = attach(One(), tmp_path)
    assert report.used == 0 and "objective" in report.on_lightgbm["y"]
    assert compiled_for(booster, 3, raw_score=False) is None


def test_without_lleaves_the_run_predicts_with_lightgbm_and_says_so(monkeypatch, tmp_path):
    """A platform where lleaves or llvmlite cannot be imported: nothing is cached, and the
    run's note says compiled prediction is off (LightGBM predicts; no error)."""
    import sys

    from kenshin.annual import compile_prediction
    from models.compiled import all_cached, available

    monkeypatch.setitem(sys.modules, "lleaves", None)  # import lleaves → ImportError
    assert "lleaves" in available()
    booster, _ = _zero_split_booster()

    class One:
        feature_names = ["x", "noise"]
        boosters = {"y": booster}
        best_iteration = {"y": booster.current_iteration()}

    assert not all_cached(One(), tmp_path)
    assert compile_prediction(One(), tmp_path).startswith("compiled prediction off: lleaves")
    assert compiled_for(booster, booster.current_iteration(), raw_score=True) is None
