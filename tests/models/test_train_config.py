"""train.toml: the shipped file is the code's defaults; a bad file is one line naming key and
value; what the file says is what is trained, and the run records the resolved file."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import numpy as np
import pytest

from data.columns import OUTCOMES
from data.errors import BadInputError
from features.tables import TrainingTablesConfig
from models.config import LGBMParams, ModelConfig
from models.train_config import DEFAULT_TRAIN_CONFIG, TrainConfig, load_train_config

pytestmark = pytest.mark.xdist_group("small_ward")

#: Cheap training on the small ward: one outcome, no forecasts / baselines / masking copies.
CHEAP = """\
outcomes = ["hypertension"]
forecasts = false
baselines = false
select = false
min_events = 0

[lgbm]
n_estimators = 40
early_stopping_rounds = 10
{lgbm}

[masking]
enabled = false
"""


def _write(tmp_path, text: str, name: str = "train.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_holds_the_code_defaults():
    assert (
        DEFAULT_TRAIN_CONFIG.name == "train.toml" and DEFAULT_TRAIN_CONFIG.parent.name == "models"
    )
    shipped = load_train_config()
    assert shipped == TrainConfig()
    assert shipped.model == ModelConfig()
    assert shipped.tables == TrainingTablesConfig()
    # every setting is spelled out in the shipped file (nothing hides in the code), except the
    # outcomes: left out, every outcome declared in data.outcomes is trained
    raw = tomllib.loads(DEFAULT_TRAIN_CONFIG.read_text(encoding="utf-8"))
    resolved = tomllib.loads(shipped.to_toml())
    assert resolved.pop("outcomes") == list(OUTCOMES)
    assert raw == resolved


def test_partial_file_keeps_the_other_defaults(tmp_path):
    cfg = load_train_config(_write(tmp_path, "horizon_years = 2\n[lgbm]\nnum_leaves = 7\n"))
    assert cfg.model == replace(ModelConfig(), horizon_years=2, lgbm=LGBMParams(num_leaves=7))
    assert cfg.tables.labels.horizon_years == 2  # one horizon for labels and models
    assert cfg.tables.features == TrainingTablesConfig().features


def test_resolved_toml_loads_back_to_the_same_config(tmp_path):
    text = 'calibration = "isotonic"\n[split]\ntest_year = 2023\n[masking.optional_items]\n'
    text += 'urine = ["urine_glucose", "urine_protein"]\n[features]\nslope_window = 2\n'
    cfg = load_train_config(_write(tmp_path, text))
    assert cfg.model.split.test_year == 2023
    assert cfg.model.masking.optional_items == (("urine", ("urine_glucose", "urine_protein")),)
    assert load_train_config(_write(tmp_path, cfg.to_toml(), "resolved.toml")) == cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[lgbm]\nlearning_rate = -1\n", "lgbm.learning_rate = -1: must be > 0"),
        ("[forecast.lgbm]\nnum_leaves = 1\n", "forecast.lgbm.num_leaves = 1: must be ≥ 2"),
        ('calibration = "platt"\n', "calibration = \"platt\": must be 'isotonic' or 'sigmoid'"),
        ("horizon_years = 4\n", "horizon_years = 4: must be ≤ 3"),
        ('outcomes = ["gout"]\n', 'outcomes.0 = "gout": must be'),
        ("min_events = -5\n", "min_events = -5: must be ≥ 0"),
        ("[split]\ntest_person_share = 1.5\n", "split.test_person_share = 1.5: must be < 1"),
        ("[masking]\nshare = 2\n", "masking.share = 2: must be ≤ 1"),
        ('[lgbm]\nnum_leaves = "many"\n', 'lgbm.num_leaves = "many": must be a valid integer'),
        ("[features]\nslope_window = 5\n", "features: slope_window must be 2 or 3"),
        ("[labels]\nhorizon_years = 2\n", "labels.horizon_years = 2: set horizon_years at the top"),
        ("[split]\nval_person_share = 0.6\n", "split: val_person_share (0.6) must be below"),
    ],
)
def test_bad_value_is_one_line_naming_key_and_value(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(BadInputError) as e:
        load_train_config(path)
    msg = str(e.value)
    assert msg == f"{path}: {msg.split(': ', 1)[1]}" and "\n" not in msg
    assert expected in msg, msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("learnig_rate = 0.1\n", "learnig_rate: unknown key"),
        (
            "[lgbm]\nlearnig_rate = 0.1\n",
            "lgbm.learnig_rate: unknown key (did you mean learning_rate?)",
        ),
        ("[features]\nwindow = 2\n", "features.window: unknown key"),
        ("[optimiser]\nlr = 1\n", "optimiser: unknown key"),
    ],
)
def test_unknown_key_is_refused(tmp_path, text, expected):
    with pytest.raises(BadInputError, match="unknown key") as e:
        load_train_config(_write(tmp_path, text))
    assert expected in str(e.value)


def test_unreadable_files_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such training config file"):
        load_train_config(tmp_path / "missing.toml")
    with pytest.raises(BadInputError, match="not a TOML file"):
        load_train_config(_write(tmp_path, "[lgbm\n"))


def test_python_config_is_validated_the_same_way():
    with pytest.raises(ValueError, match="learning_rate"):
        LGBMParams(learning_rate=-1)
    with pytest.raises(ValueError, match="unexpected"):
        LGBMParams(learnig_rate=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="differs"):
        TrainConfig(model=ModelConfig(horizon_years=2))
    assert TrainConfig.from_model(ModelConfig(horizon_years=2)).tables.labels.horizon_years == 2


# ------------------------------------------------------------------------ on a small ward


@pytest.fixture(scope="module")
def ward(tmp_path_factory):
    from tests.models.ward_helpers import make_ward

    return make_ward(tmp_path_factory.mktemp("train_config"), residents=1_500, years=5, seed=5)


def test_changed_parameter_changes_what_is_trained(ward, tmp_path):
    from models.train import train_engine

    base = load_train_config(_write(tmp_path, CHEAP.format(lgbm=""), "base.toml"))
    other = load_train_config(
        _write(tmp_path, CHEAP.format(lgbm="num_leaves = 4\nlearning_rate = 0.3"), "other.toml")
    )
    assert other.model == replace(
        base.model, lgbm=replace(base.model.lgbm, num_leaves=4, learning_rate=0.3)
    )
    e1, d1 = train_engine(ward.features, ward.labels, base.model)
    e2, d2 = train_engine(ward.features, ward.labels, other.model)
    params = e2.boosters["hypertension"].params
    assert params["num_leaves"] == 4 and params["learning_rate"] == 0.3
    X = d1.outcomes["hypertension"].X
    p1, p2 = e1.predict_outcome(X, "hypertension"), e2.predict_outcome(X, "hypertension")
    assert not np.allclose(p1, p2)
    # the same file twice trains the same model (deterministic)
    e3, _ = train_engine(ward.features, ward.labels, base.model)
    np.testing.assert_array_equal(p1, e3.predict_outcome(X, "hypertension"))


def test_training_run_records_the_resolved_config(ward, tmp_path):
    from mlflow import MlflowClient

    from kenshin.commands import run_train

    path = _write(tmp_path, CHEAP.format(lgbm="num_leaves = 5"))
    engine, _report, run = run_train(ward.store, tmp_path / "work", config=path)
    assert engine.config.lgbm.num_leaves == 5
    client = MlflowClient(run.tracking_uri)
    local = client.download_artifacts(run.run_id, "config/train.toml", str(tmp_path))
    assert load_train_config(local) == load_train_config(path)
    params = client.get_run(run.run_id).data.params
    assert params["model.lgbm.num_leaves"] == "5"
    assert params["config.source"] == str(path.resolve())
    assert params["tables.labels.horizon_years"] == "1"
