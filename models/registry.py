"""MLflow tracking, model registry and the promotion gate (実験管理とモデル登録).

* :func:`tracking_uri`: ``$MLFLOW_TRACKING_URI`` if set, else an embedded SQLite store
  ``<workdir>/mlflow.db`` (absolute ``sqlite:////…`` URI) with artifacts in
  ``<workdir>/mlartifacts``.
* :func:`log_training_run`: one MLflow run per training — flattened typed config, store
  fingerprint (sha256 + row counts), feature-set version and declarations, every metric,
  slice / synthetic / forecast tables, ROC / calibration / SHAP plots, a model card and the git
  commit — and the whole engine as one pyfunc registered as ``kenshin-risk@challenger``.
* :func:`check_writable`: before any work, a command that writes to the tracking store tries
  to create a file in the work folder and the local store's folders, or in their nearest
  existing ancestors (``os.access`` says yes to root and on read-only mounts); a folder that
  cannot be written is exit 2 with one line, and nothing is created.
* Runs left ``RUNNING`` by a killed process: every run records its process (``kenshin.pid``,
  ``kenshin.host``, ``kenshin.process`` = boot id and start time); :func:`sweep_stale_runs`
  (run when a command first uses a tracking store) marks a RUNNING run of the kenshin
  experiments ``FAILED`` when that process is gone. SIGTERM / SIGHUP / SIGINT during a run end
  it as ``KILLED`` before the process exits (exit code 128 + signal for SIGTERM / SIGHUP).
* :func:`promote`: re-scores challenger and champion on the challenger's test rows (rebuilt
  from the store the challenger was trained on, checked against its fingerprint) and moves
  ``champion`` only if no outcome's AUC drops by more than ``auc_tolerance`` and the
  challenger's calibration holds (ECE ≤ ``ece_max``, |slope − 1| ≤ ``slope_tolerance``). The
  first model is promoted. The decision and its figures are logged as a small MLflow run
  (+ ``promotion.json``) and as tags on the challenger's model version.

Privacy: nothing keyed by person reaches MLflow — no pseudonyms, no rows. The input example is
synthetic (per-column quantiles, see models.engine.input_example); tables are aggregates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "EXPERIMENT",
    "MODEL_NAME",
    "PromotionDecision",
    "PromotionPolicy",
    "TrainingRun",
    "check_writable",
    "configure_tracking",
    "flatten_config",
    "git_commit",
    "log_training_run",
    "promotion_gate",
    "prepare_tracking",
    "promote",
    "outcome_test_rows",
    "sweep_stale_runs",
    "tracking_uri",
]

MODEL_NAME = "kenshin-risk"
EXPERIMENT = "kenshin"
CHALLENGER = "challenger"
CHAMPION = "champion"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- tracking set-up


def tracking_uri(workdir: Path | str = "work") -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:////<abs workdir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = (Path(workdir) / "mlflow.db").resolve()
    return "sqlite:///" + db.as_posix()  # as_posix() starts with "/": four slashes in all


def _artifact_root(uri: str, workdir: Path | str) -> str | None:
    """Artifact location for a new experiment: beside a local SQLite store, else the server's."""
    if not uri.startswith("sqlite:"):
        return None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        db = Path(uri.split("sqlite:///", 1)[-1]).resolve()
        return (db.parent / "mlartifacts").as_uri()
    return (Path(workdir).resolve() / "mlartifacts").as_uri()


def configure_tracking(workdir: Path | str = "work", experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the tracking store of ``workdir``; create the experiment; return its id."""
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri(workdir)
    if uri.startswith("sqlite:") and not os.environ.get("MLFLOW_TRACKING_URI"):
        Path(workdir).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri not in _SWEPT:
        sweep_stale_runs(workdir)
    exp = mlflow.get_experiment_by_name(experiment)
    exp_id = (
        exp.experiment_id
        if exp is not None
        else mlflow.create_experiment(experiment, artifact_location=_artifact_root(uri, workdir))
    )
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


@contextmanager
def _own_run(experiment_id: str, run_name: str):
    """A run of its own in the kenshin experiment, also under ``mlflow run`` (which exports
    ``MLFLOW_RUN_ID`` for its project run): the project run's id is kept as a tag.

    The run records its process (:func:`_process_tags`, for :func:`sweep_stale_runs`) and is
    ended ``KILLED`` when SIGTERM, SIGHUP or SIGINT interrupts it."""
    import mlflow

    outer = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        active = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=_process_tags()
        )
        with _ended_quietly(active) as run:
            with _killed_on_signal():
                if outer:
                    mlflow.set_tag("kenshin.project_run_id", outer)
                yield run
    finally:
        if outer is not None:
            os.environ["MLFLOW_RUN_ID"] = outer


#: MLflow's loggers that print to the terminal (each has its own stderr handler).
_MLFLOW_LOGGERS = ("mlflow", "sqlalchemy.engine", "alembic", "huey")


@contextmanager
def _mlflow_logging_silenced():
    """MLflow's own logging off for a block. When ending a run fails (a full disk: "database
    or disk is full" while the run is marked FAILED), MLflow logs the error with three
    tracebacks on stderr before raising it; the raised error reaches the command's error log
    (the chain included) and stderr keeps its one line."""
    loggers = [logging.getLogger(name) for name in _MLFLOW_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextmanager
def _ended_quietly(active):
    """``with active as run`` (an MLflow ``ActiveRun``), its ending (FINISHED, or FAILED when
    the block raises) with :func:`_mlflow_logging_silenced`; an error of the ending is raised
    (chained to the block's own)."""
    run = active.__enter__()
    try:
        yield run
    except BaseException as exc:
        with _mlflow_logging_silenced():
            if not active.__exit__(type(exc), exc, exc.__traceback__):
                raise
    else:
        with _mlflow_logging_silenced():
            active.__exit__(None, None, None)


# ------------------------------------------------------------ writable store, stale runs


class RunInterrupted(SystemExit):
    """SIGTERM / SIGHUP during an MLflow run: unwinds (temporary folders are removed), the run
    is ended ``KILLED``, and the process exits with 128 + the signal number."""


#: Signals that end an open run as KILLED (SIGINT arrives as KeyboardInterrupt).
_RUN_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextmanager
def _killed_on_signal():
    """End the active MLflow run as ``KILLED`` if SIGTERM / SIGHUP / SIGINT interrupts the
    block. Handlers are installed only in the main thread and only where the signal is not
    ignored (``nohup``); the previous handlers are restored afterwards."""
    import mlflow

    def interrupted(signum, _frame):
        raise RunInterrupted(128 + signum)

    previous: dict = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _RUN_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, interrupted)
    try:
        yield
    except (KeyboardInterrupt, RunInterrupted):
        for sig in (*previous, signal.SIGINT):  # a second signal must not cut the ending short
            with contextlib.suppress(ValueError, OSError):
                if threading.current_thread() is threading.main_thread():
                    previous.setdefault(sig, signal.getsignal(sig))
                    signal.signal(sig, signal.SIG_IGN)
        with contextlib.suppress(Exception), _mlflow_logging_silenced():
            mlflow.set_tag("kenshin.ended", "interrupted by a signal")
            mlflow.end_run("KILLED")
        raise
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _process_identity(pid: int) -> str | None:
    """``boot id/start time`` of a process: a reused pid or a reboot gives another one."""
    boot, start = _boot_id(), _start_time(pid)
    return f"{boot}/{start}" if boot and start else None


def _process_tags() -> dict[str, str]:
    tags = {"kenshin.pid": str(os.getpid()), "kenshin.host": socket.gethostname()}
    ident = _process_identity(os.getpid())
    if ident:
        tags["kenshin.process"] = ident
    return tags


def _process_gone(tags: dict) -> bool:
    """True when the process a run's tags name has ended (only for runs of this host)."""
    try:
        pid = int(tags.get("kenshin.pid", ""))
    except ValueError:
        return False
    if tags.get("kenshin.host") != socket.gethostname() or pid <= 0:
        return False  # another machine's process: cannot tell
    recorded = tags.get("kenshin.process")
    if recorded and (boot := _boot_id()) and not recorded.startswith(f"{boot}/"):
        return True  # the machine restarted since
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, someone else's
    except OSError:
        return False
    now = _process_identity(pid)
    return bool(recorded and now and now != recorded)  # the pid was reused


#: Tracking URIs swept in this process.
_SWEPT: set[str] = set()


def sweep_stale_runs(workdir: Path | str = "work") -> list[dict]:
    """Mark ``FAILED`` every RUNNING run of the kenshin experiments whose process is gone.

    A run records its process (``kenshin.pid``, ``kenshin.host``, ``kenshin.process``); a
    ``kill -9`` or a crash leaves it RUNNING. Only runs of this host are judged. Returns what
    was marked (run id, pid). A store that does not exist yet is left alone (not created);
    housekeeping never stops a command, so a store that cannot be searched is skipped.
    """
    uri = tracking_uri(workdir)
    _SWEPT.add(uri)
    if uri.startswith("sqlite:") and not _sqlite_path(uri).is_file():
        return []
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        ids = [
            e.experiment_id
            for e in client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT}%'")
        ]
        if not ids:
            return []
        runs = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000)
        swept = []
        for run in runs:
            tags = run.data.tags
            if not _process_gone(tags):
                continue
            pid = tags.get("kenshin.pid")
            client.set_tag(
                run.info.run_id, "kenshin.ended",
                f"process {pid} on {tags.get('kenshin.host')} ended without closing the run; "
                f"marked FAILED by process {os.getpid()}",
            )  # fmt: skip
            client.set_terminated(run.info.run_id, "FAILED")
            swept.append({"run_id": run.info.run_id, "pid": pid, "name": run.info.run_name})
        return swept
    except Exception as exc:  # housekeeping only
        logging.getLogger(__name__).warning("stale-run sweep skipped: %s", exc)
        return []


def _sqlite_path(uri: str) -> Path:
    return Path(uri.split("sqlite:///", 1)[-1])


def _try_write(folder: Path, what: str) -> None:
    """Stop with a one-line reason unless a file can be created in ``folder`` (or its nearest
    existing ancestor): :func:`data.files.require_writable`."""
    from data.files import require_writable

    require_writable(
        folder, str(folder), what, "choose a writable --workdir (or MLFLOW_TRACKING_URI)"
    )


def check_writable(workdir: Path | str = "work") -> None:
    """Stop with :class:`~kenshin.errors.BadInputError` (exit 2) unless the work folder and the
    local tracking store (SQLite file and its folder, artifact folder) can be written.

    Tried by creating a file: ``os.access`` says yes to root and on read-only mounts. A remote
    tracking server is not checked here.
    """
    from data.errors import BadInputError

    workdir = Path(workdir)
    _try_write(workdir, "the work folder")
    uri = tracking_uri(workdir)
    if not uri.startswith("sqlite:"):
        return
    db = _sqlite_path(uri)
    _try_write(db.parent, "the MLflow tracking store's folder")
    artifacts = _artifact_root(uri, workdir)
    if artifacts:
        from urllib.parse import unquote, urlparse

        _try_write(Path(unquote(urlparse(artifacts).path)), "the MLflow artifact folder")
    if db.exists():
        try:
            fd = os.open(db, os.O_RDWR)
            os.close(fd)
        except OSError as exc:
            raise BadInputError(
                f"{db}: cannot write the MLflow tracking store ({exc.strerror or exc}); "
                "nothing was done"
            ) from None


def prepare_tracking(workdir: Path | str = "work") -> list[dict]:
    """What a command that writes to MLflow does first: :func:`check_writable`, then
    :func:`sweep_stale_runs` (returns the runs marked FAILED)."""
    check_writable(workdir)
    return sweep_stale_runs(workdir)


def git_commit() -> str:
    """``git rev-parse HEAD`` of the project (``+dirty`` if files changed), else "unknown"."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_ROOT,
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) or "unknown"


def flatten_config(obj: Any, prefix: str = "") -> dict[str, str]:
    """A (nested) dataclass as flat ``a.b.c`` → string parameters."""
    d = asdict(obj) if is_dataclass(obj) else obj
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = str(v)
    return out


# ------------------------------------------------------------------------------ test rows


def outcome_test_rows(
    features: pd.DataFrame, labels: pd.DataFrame, engine
) -> dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """Per outcome of ``engine``: its test-year (X, y, keys) rebuilt from the tables."""
    from models.train import prepare_outcome

    out = {}
    for o in engine.outcomes:
        s = prepare_outcome(features, labels, o, engine.test_year, engine.config)
        m = s.split == "test"
        out[o] = (s.X[m], s.y[m], s.keys[m].reset_index(drop=True))
    return out


# ---------------------------------------------------------------------------- artifacts


def _md_table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """A small markdown table (no tabulate dependency)."""

    def cell(v):
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else floatfmt.format(v)
        return str(v)

    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _plots(
    engine, rows, out: Path, shap_rows: int = 2000
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """ROC and calibration curves, SHAP bars per outcome, and per outcome the shap views by
    clinical item (models.explain): a beeswarm (``shap_beeswarm_<outcome>.png``) and dependence
    plots of the 3 strongest items (``shap_dependence_<outcome>_<k>.png``), built on a
    ``shap.Explanation`` of the grouped contributions of the first ``shap_rows`` test rows.

    Returns (mean |SHAP| per feature, reliability bins, mean |SHAP| per clinical item).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from models.explain import shap_explanation, shap_plots

    out.mkdir(parents=True, exist_ok=True)
    fig_roc, ax_roc = plt.subplots(figsize=(6, 6))
    fig_cal, ax_cal = plt.subplots(figsize=(6, 6))
    shap_tables, calibration, item_tables = [], [], []
    for o, (X, y, _keys) in rows.items():
        if len(y) == 0:
            continue
        p = engine.predict_outcome(X, o)
        if y.min() != y.max():
            fpr, tpr, _ = roc_curve(y, p)
            ax_roc.plot(fpr, tpr, label=o)
        bins = np.unique(np.quantile(p, np.linspace(0, 1, 11)))
        idx = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, max(len(bins) - 2, 0))
        mp = np.bincount(idx, weights=p) / np.maximum(np.bincount(idx), 1)
        my = np.bincount(idx, weights=y) / np.maximum(np.bincount(idx), 1)
        ax_cal.plot(mp, my, marker="o", label=o)
        n_bin = np.bincount(idx)
        calibration.append(
            pd.DataFrame({"outcome": o, "bin": np.arange(len(n_bin)), "mean_predicted": mp,
                          "observed": my, "n": n_bin})[lambda d: d["n"] > 0]
        )  # fmt: skip
        c = engine.contributions(X[: min(shap_rows, len(X))], o)[engine.feature_names]
        imp = c.abs().mean(axis=0)
        imp = imp.sort_values(ascending=False)
        shap_tables.append(
            pd.DataFrame({"outcome": o, "feature": imp.index, "mean_abs_shap": imp.to_numpy()})
        )
        top = imp.head(15)[::-1]
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.barh(top.index, top.to_numpy())
        ax.set_xlabel("mean |SHAP| (log-odds), test sample")
        ax.set_title(f"SHAP summary: {o}")
        fig.tight_layout()
        fig.savefig(out / f"shap_{o}.png", dpi=90)
        plt.close(fig)
        expl = shap_explanation(engine, X[: min(shap_rows, len(X))], o)
        shap_plots(expl, o, out)
        keys = list(_item_keys(engine))
        strength = np.abs(expl.values).mean(axis=0)
        item_tables.append(
            pd.DataFrame({"outcome": o, "item": keys, "label": expl.feature_names,
                          "mean_abs_shap": strength}).sort_values(
                "mean_abs_shap", ascending=False, kind="stable")
        )  # fmt: skip
    ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test year)")
    ax_roc.legend(fontsize=8)
    fig_roc.tight_layout()
    fig_roc.savefig(out / "roc.png", dpi=90)
    ax_cal.plot([0, 1], [0, 1], "k--", lw=0.8)
    top_p = max(ax_cal.get_xlim()[1], ax_cal.get_ylim()[1])
    ax_cal.set(xlim=(0, top_p), ylim=(0, top_p), xlabel="mean predicted risk (decile)",
               ylabel="observed event rate", title="Calibration (test year)")  # fmt: skip
    ax_cal.legend(fontsize=8)
    fig_cal.tight_layout()
    fig_cal.savefig(out / "calibration.png", dpi=90)
    plt.close(fig_roc)
    plt.close(fig_cal)
    shap = pd.concat(shap_tables, ignore_index=True) if shap_tables else pd.DataFrame()
    calib = pd.concat(calibration, ignore_index=True) if calibration else pd.DataFrame()
    items = pd.concat(item_tables, ignore_index=True) if item_tables else pd.DataFrame()
    return shap, calib, items


def _item_keys(engine) -> tuple[str, ...]:
    """Clinical items of the engine's features, in the order of models.explain's columns."""
    from features.declarations import item_matrix

    return item_matrix(list(engine.feature_names))[1]


def model_card(engine, report, fingerprint: dict, follow_up: pd.DataFrame | None, commit: str,
               truth_used: bool) -> str:  # fmt: skip
    """Markdown model card: intended use, data, metrics by slice, limitations."""
    m = report.metrics
    lead = _lead_model(m)
    gbm = m[m["model"] == lead]
    cols = ["outcome", "slice", "group", "n", "events", "auc", "pr_auc", "brier", "cal_slope",
            "ece", "precision_top_k"]  # fmt: skip
    rows = sum(fingerprint.get("rows", {}).values())
    parts = [
        "# Model card: kenshin-risk",
        "",
        f"- feature set: `{engine.feature_set_version}` ({len(engine.feature_names)} features)",
        f"- outcomes: {', '.join(engine.outcomes)}; forecasts: "
        f"{', '.join(engine.forecast_items) or 'none'}",
        f"- test year (index fiscal year): {engine.test_year}; git commit: `{commit}`",
        "",
        "## Intended use",
        "Ranks NHI members aged 40-74 by their risk of developing each lifestyle-disease outcome "
        "by their next specific health checkup (特定健診), to choose who receives a preventive "
        "advice letter and to explain why (SHAP drivers, value forecasts). It supports health "
        "staff; it is not a diagnosis and must not decide care, insurance or eligibility.",
        "",
        "## Data",
        f"Pseudonymised checkup store, sha256 `{fingerprint.get('sha256', '?')}`, {rows:,} rows "
        "in its non-private tables. One as-of feature row per person and index checkup; labels "
        "from the next checkup. Temporal split by index year, grouped by person.",
        "",
        _md_table(report.splits),
    ]
    if follow_up is not None and len(follow_up):
        fu = follow_up[["outcome", "at_risk", "with_follow_up", "without_follow_up",
                        "share_without_follow_up", "event_rate"]]  # fmt: skip
        parts += ["", "Index rows without a follow-up checkup are left out of training "
                  "(attendance bias):", "", _md_table(fu)]  # fmt: skip
    parts += ["", f"## Metrics by slice ({lead}, test year)", "", _md_table(gbm[cols])]
    if len(getattr(report, "selection", ())):
        parts += ["", "Member chosen per outcome on the validation year (models.member_choice):", "",
                  _md_table(report.selection)]  # fmt: skip
    base = m[(m["slice"] == "all") & (m["model"] != lead)][["outcome", "model", "auc", "ece"]]
    if len(base):
        parts += ["", "Baselines and oracle on the same rows:", "", _md_table(base)]
    if len(report.forecasts):
        parts += ["", "## Value forecasts (80% interval)", "", _md_table(report.forecasts)]
    if len(report.synthetic):
        parts += ["", "## Synthetic truth", "", _md_table(report.synthetic)]
    for extra in getattr(report, "extra", {}).values():
        if len(extra.table):
            parts += ["", f"## {extra.title}", *(["", extra.note] if extra.note else []), "",
                      _md_table(extra.table)]  # fmt: skip
    parts += [
        "",
        "## Limitations",
        "- Trained only on residents who attend checkups two years running; risk of those who "
        "skip the follow-up checkup may differ (see the follow-up table).",
        "- Calibrated on one validation year; recalibrate when attendance, coding or the "
        "population changes. Slices with few events have wide uncertainty.",
        "- Monotone constraints enforce the declared medical direction of every modifiable "
        "item (habits, weight, waist, BMI) and of the core laboratory values "
        "(features.declarations, ``monotone``); age, sex, history counts and the other "
        "features are free. Associations are not causes, and SHAP drivers explain the model, "
        "not the person's biology.",
        "- Questionnaire answers before FY2024 are harmonised; some categories (ex-smokers, "
        "≥5 合) cannot be recovered from old answers.",
    ]
    if truth_used or len(report.synthetic):
        parts += [
            "- **Synthetic-truth caveat**: these figures come from a synthetic ward whose latent "
            "model is smoother and more persistent than real people (true-probability AUCs "
            "0.92-0.98). Oracle ratios and driver agreement measure recovery of the generator, "
            "not clinical validity; real-data performance will be lower.",
        ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ training run


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    experiment_id: str
    tracking_uri: str
    model_uri: str
    version: str | None


def _lead_model(metrics: pd.DataFrame) -> str:
    """The engine's own rows: ``engine`` (selected member) if reported, else ``lightgbm``."""
    return "engine" if (metrics["model"] == "engine").any() else "lightgbm"


def _overall_metrics(report) -> dict[str, float]:
    out: dict[str, float] = {}
    lead = _lead_model(report.metrics)
    names = ["auc", "pr_auc", "brier", "cal_slope", "cal_intercept", "ece", "precision_top_k",
             "event_rate", "mean_p", "n", "events"]  # fmt: skip
    for r in report.metrics.to_dict("records"):
        if r["model"] == lead:
            stem = (
                r["outcome"] if r["slice"] == "all" else f"{r['outcome']}.{r['slice']}.{r['group']}"
            )
        elif r["slice"] == "all":
            stem = f"{r['outcome']}.{r['model']}"
        else:
            continue
        for k in names:
            out[f"{stem}.{k}"] = r.get(k)
    for r in report.synthetic.to_dict("records"):
        for k, v in r.items():
            if k not in ("outcome", "n") and isinstance(v, int | float | np.number):
                out[f"{r['outcome']}.{k}"] = v
    for r in report.forecasts.to_dict("records"):
        for k, v in r.items():
            if k != "item":
                out[f"forecast.{r['item']}.{k}"] = v
    for k, v in report.timings.items():
        out[f"time.{k}"] = v
    out.update(getattr(report, "extra_metrics", {}))
    # MLflow accepts letters, digits, "_-. /" in metric names ("creatinine+egfr" would fail).
    return {
        re.sub(r"[^\w\-. /]", "_", k): float(v)
        for k, v in out.items()
        if v is not None and np.isfinite(float(v))
    }


def log_training_run(
    engine,
    report,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    store: Path,
    workdir: Path | str = "work",
    tables_config=None,
    truth_used: bool = False,
    follow_up: pd.DataFrame | None = None,
    register: bool = True,
) -> TrainingRun:
    """Log one training run (see module doc); register the engine as ``challenger``."""
    import mlflow

    from data.store import read_manifest
    from models.engine import log_engine

    store = Path(store)
    exp_id = configure_tracking(workdir)
    fingerprint = read_manifest(store).get("store_fingerprint", {})
    commit = git_commit()
    params = _training_params(engine, tables_config, store, fingerprint, truth_used, commit)
    with _own_run(exp_id, f"train FY{engine.test_year}") as run:
        mlflow.set_tags({"kenshin.kind": "train", "git_commit": commit,
                         "feature_set_version": engine.feature_set_version,
                         "store_sha256": params["store.sha256"]})  # fmt: skip
        mlflow.log_params(params)
        metrics = _overall_metrics(report)
        items = list(metrics.items())
        for i in range(0, len(items), 500):
            mlflow.log_metrics(dict(items[i : i + 500]))
        with tempfile.TemporaryDirectory(prefix="kenshin-run-") as tmp:
            _write_run_artifacts(
                Path(tmp), engine, report, features, labels, fingerprint, follow_up, commit,
                truth_used,
            )  # fmt: skip
            mlflow.log_artifacts(tmp)
        info = log_engine(
            engine, features, registered_model_name=MODEL_NAME if register else None,
            tables_config=tables_config,
        )  # fmt: skip
    version = None
    if register:
        version = _register_challenger(info, engine, params["store.sha256"], commit)
    return TrainingRun(run.info.run_id, exp_id, tracking_uri(workdir), info.model_uri, version)


def _training_params(
    engine, tables_config, store: Path, fingerprint: dict, truth_used: bool, commit: str
) -> dict[str, str]:
    """The run's parameters: flattened configs, feature set, the store (path, sha256, rows per
    table), whether the synthetic truth was used, the git commit."""
    by_table: dict[str, int] = {}
    for rel, n in fingerprint.get("rows", {}).items():
        table = rel.split("/", 1)[0].removesuffix(".parquet")
        by_table[table] = by_table.get(table, 0) + int(n)
    return {
        **flatten_config(engine.config, "model."),
        **(flatten_config(tables_config, "tables.") if tables_config is not None else {}),
        "feature_set_version": engine.feature_set_version,
        "n_features": str(len(engine.feature_names)),
        "test_year": str(engine.test_year),
        "store.path": str(store.resolve()),
        "store.sha256": fingerprint.get("sha256", "unknown"),
        **{f"store.rows.{t}": str(n) for t, n in by_table.items()},
        "truth_used": str(bool(truth_used)),
        "git_commit": commit,
    }


def _write_run_artifacts(
    t: Path,
    engine,
    report,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fingerprint: dict,
    follow_up: pd.DataFrame | None,
    commit: str,
    truth_used: bool,
) -> None:
    """The run's artifacts into folder ``t``: store fingerprint, follow-up, feature
    declarations, evaluation tables (CSV + HTML), plots and the model card. Aggregates only."""
    from data.files import csv_bytes  # spreadsheet-safe CSV (no cell runs as a formula)
    from features.declarations import declarations_frame

    (t / "data").mkdir()
    (t / "data" / "store_fingerprint.json").write_text(json.dumps(fingerprint, indent=2))
    if follow_up is not None:
        (t / "data" / "follow_up.csv").write_bytes(csv_bytes(follow_up))
    (t / "features").mkdir()
    (t / "features" / "declarations.csv").write_bytes(csv_bytes(declarations_frame()))
    (t / "features" / "feature_set_version.txt").write_text(engine.feature_set_version + "\n")
    ev = t / "evaluation"
    ev.mkdir()
    tables = {"metrics_by_slice": report.metrics, "synthetic": report.synthetic,
              "forecasts": report.forecasts, "splits": report.splits,
              "summary": report.summary(),
              "selection": getattr(report, "selection", pd.DataFrame()),
              **{k: t.table for k, t in getattr(report, "extra", {}).items()}}  # fmt: skip
    for name, df in tables.items():
        if len(df):
            (ev / f"{name}.csv").write_bytes(csv_bytes(df))
            df.to_html(ev / f"{name}.html", index=False, float_format="%.4f")
    rows = outcome_test_rows(features, labels, engine)
    shap, calib, shap_items = _plots(engine, rows, t / "plots")
    if len(shap):
        (ev / "shap_mean_abs.csv").write_bytes(csv_bytes(shap))
    if len(shap_items):
        (ev / "shap_items_mean_abs.csv").write_bytes(csv_bytes(shap_items))
    if len(calib):
        (ev / "calibration_bins.csv").write_bytes(csv_bytes(calib))
    (t / "model_card.md").write_text(
        model_card(engine, report, fingerprint, follow_up, commit, truth_used)
    )


def _register_challenger(info, engine, store_sha: str, commit: str) -> str:
    """Point ``challenger`` at the version just registered; tag it. Returns the version."""
    from mlflow import MlflowClient

    version = str(info.registered_model_version)
    client = MlflowClient()
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
    for k, v in {"feature_set_version": engine.feature_set_version,
                 "test_year": str(engine.test_year), "store_sha256": store_sha,
                 "git_commit": commit}.items():  # fmt: skip
        client.set_model_version_tag(MODEL_NAME, version, k, v)
    return version


# ------------------------------------------------------------------------------- promotion


@dataclass(frozen=True)
class PromotionPolicy:
    """The gate: AUC may not drop by more than ``auc_tolerance`` on any outcome, and the
    challenger's calibration must hold (ECE ≤ ``ece_max``, |slope − 1| ≤ ``slope_tolerance``)."""

    auc_tolerance: float = 0.01
    ece_max: float = 0.05
    slope_tolerance: float = 0.3

    def __post_init__(self) -> None:
        if self.auc_tolerance < 0 or self.ece_max <= 0 or self.slope_tolerance <= 0:
            raise ValueError("auc_tolerance ≥ 0, ece_max > 0 and slope_tolerance > 0")


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None  # the champion before the decision
    figures: pd.DataFrame = field(default_factory=pd.DataFrame)
    run_id: str | None = None
    policy: PromotionPolicy = field(default_factory=PromotionPolicy)

    def to_json(self) -> dict:
        return {
            "promoted": self.promoted,
            "reason": self.reason,
            "challenger_version": self.challenger_version,
            "champion_version_before": self.champion_version,
            "policy": asdict(self.policy),
            "figures": json.loads(self.figures.to_json(orient="records")),
        }


def _alias_version(client, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


def _figures(chal, champ, rows, policy: PromotionPolicy) -> pd.DataFrame:
    from models.evaluate import binary_metrics

    out = []
    for o, (X, y, _keys) in rows.items():
        mc = binary_metrics(y, chal.predict_outcome(X, o))
        r = {"outcome": o, "n": int(len(y)), "events": int(y.sum()),
             "challenger_auc": mc["auc"], "challenger_ece": mc["ece"],
             "challenger_cal_slope": mc["cal_slope"]}  # fmt: skip
        if champ is not None and o in champ.outcomes:
            r["champion_auc"] = binary_metrics(y, champ.predict_outcome(X, o))["auc"]
            r["auc_drop"] = r["champion_auc"] - r["challenger_auc"]
        else:
            r["champion_auc"] = r["auc_drop"] = np.nan
        r["auc_ok"] = bool(not (r["auc_drop"] > policy.auc_tolerance))
        r["ece_ok"] = bool(r["challenger_ece"] <= policy.ece_max)
        r["slope_ok"] = bool(abs(r["challenger_cal_slope"] - 1) <= policy.slope_tolerance)
        out.append(r)
    return pd.DataFrame(out)


def promotion_gate(
    figures: pd.DataFrame, policy: PromotionPolicy, dropped: dict[str, str] | None = None
) -> list[str]:
    """Why the challenger fails the gate, one line per failure (empty: it passes).

    ``figures``: :func:`_figures` rows (``auc_ok``, ``ece_ok``, ``slope_ok`` per outcome);
    ``dropped``: outcomes the champion scores and the challenger does not (switched off for
    too few events), with the challenger's reason. Pure: no registry, no MLflow.
    """
    fails = []
    for o, why in (dropped or {}).items():
        fails.append(f"{o} is scored by the champion but not by the challenger"
                     + (f" ({why})" if why else ""))  # fmt: skip
    for r in figures.to_dict("records"):
        if not r["auc_ok"]:
            fails.append(f"{r['outcome']} AUC drops {r['auc_drop']:.3f} > {policy.auc_tolerance}")
        if not r["ece_ok"]:
            fails.append(f"{r['outcome']} ECE {r['challenger_ece']:.3f} > {policy.ece_max}")
        if not r["slope_ok"]:
            fails.append(f"{r['outcome']} calibration slope {r['challenger_cal_slope']:.2f} "
                         f"outside 1 ± {policy.slope_tolerance}")  # fmt: skip
    return fails


def promote(
    workdir: Path | str = "work",
    policy: PromotionPolicy | None = None,
    store: Path | None = None,
    force: bool = False,
) -> PromotionDecision:
    """Compare ``challenger`` with ``champion`` on the challenger's test rows; move the alias.

    ``store``: where to rebuild the test rows (default: the store the challenger was trained
    on, as logged); its fingerprint must match the challenger run's. ``force``: promote even
    if the gate fails (the figures and the override are still logged).
    """
    from mlflow import MlflowClient

    policy = policy or PromotionPolicy()
    exp_id = configure_tracking(workdir)
    client = MlflowClient()
    c = _contenders(client, workdir)
    rows = _challenger_test_rows(client, c, store)
    compatible = _comparable(c)
    figures = _figures(c.chal, c.champ if compatible else None, rows, policy)
    promoted, reason = _decide(c, compatible, figures, policy, force)
    decision = PromotionDecision(
        promoted, reason, str(c.chal_mv.version),
        None if c.champ_mv is None else str(c.champ_mv.version), figures, policy=policy,
    )  # fmt: skip
    before = "none" if c.champ_mv is None else f"v{c.champ_mv.version}"
    decision.run_id = _log_promotion(exp_id, decision, c.chal_mv, before, force)
    _record_decision(client, decision, c.chal_mv, before)
    return decision


@dataclass(frozen=True)
class _Contenders:
    """The challenger and the champion (None: there is none, or it is the same version): their
    model versions, pyfunc wrappers and engines."""

    chal_mv: Any
    champ_mv: Any
    chal_py: Any
    champ_py: Any = None

    @property
    def chal(self):
        return self.chal_py.engine

    @property
    def champ(self):
        return None if self.champ_py is None else self.champ_py.engine


def _contenders(client, workdir: Path | str) -> _Contenders:
    import mlflow

    from data.errors import BadInputError

    chal_mv = _alias_version(client, CHALLENGER)
    if chal_mv is None:
        raise BadInputError(
            f"no '{MODEL_NAME}@{CHALLENGER}' in {tracking_uri(workdir)}: run 'kenshin train' first"
        )
    champ_mv = _alias_version(client, CHAMPION)
    chal_wrap = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{chal_mv.version}")
    chal_py = chal_wrap.unwrap_python_model()
    champ_py = None
    if champ_mv is not None and champ_mv.version != chal_mv.version:
        champ_py = mlflow.pyfunc.load_model(
            f"models:/{MODEL_NAME}/{champ_mv.version}"
        ).unwrap_python_model()
    return _Contenders(chal_mv, champ_mv, chal_py, champ_py)


def _challenger_test_rows(client, c: _Contenders, store: Path | None) -> dict:
    """The challenger's test rows per outcome, rebuilt from ``store`` (default: the store it was
    trained on), whose fingerprint must be the one the challenger's run logged."""
    from data.errors import BadInputError
    from data.store import read_manifest
    from features.tables import build_training_tables

    params = client.get_run(c.chal_mv.run_id).data.params
    store = Path(store or params.get("store.path", ""))
    expected = params.get("store.sha256")
    actual = read_manifest(store).get("store_fingerprint", {}).get("sha256")
    if expected and actual != expected:
        raise BadInputError(
            f"{store}: the store changed since challenger v{c.chal_mv.version} was trained "
            f"(fingerprint {str(actual)[:12]}… ≠ {expected[:12]}…); retrain, then promote"
        )
    features, labels = build_training_tables(store, c.chal_py.tables_config)
    return outcome_test_rows(features, labels, c.chal)


def _comparable(c: _Contenders) -> bool:
    """Whether the champion scores the same rows: same features, same feature/label settings."""
    from features.tables import TrainingTablesConfig

    return c.champ is None or (
        c.champ.feature_names == c.chal.feature_names
        and (c.champ_py.tables_config or TrainingTablesConfig())
        == (c.chal_py.tables_config or TrainingTablesConfig())
    )


def _decide(
    c: _Contenders,
    compatible: bool,
    figures: pd.DataFrame,
    policy: PromotionPolicy,
    force: bool,
) -> tuple[bool, str]:
    """Promoted or not, and why (the gate: :func:`promotion_gate`)."""
    chal_mv, champ_mv, chal, champ = c.chal_mv, c.champ_mv, c.chal, c.champ
    if champ_mv is None:
        promoted, reason = True, "first model: promoted"
    elif champ_mv.version == chal_mv.version:
        promoted, reason = False, f"v{chal_mv.version} is already the champion"
    elif not compatible:
        promoted = False
        reason = (
            f"champion v{champ_mv.version} uses another feature set or feature/label settings "
            f"({champ.feature_set_version} vs {chal.feature_set_version}): not comparable on "
            "the same rows; use --force to promote anyway"
        )
    else:
        small = getattr(chal, "small_outcomes", None) or {}
        dropped = {o: small.get(o, "") for o in champ.outcomes
                   if o not in chal.outcomes}  # fmt: skip
        fails = promotion_gate(figures, policy, dropped)
        promoted = not fails
        reason = (
            f"passes the gate against champion v{champ_mv.version}"
            if promoted
            else "; ".join(fails)
        )
    if force and not promoted and not (champ_mv and champ_mv.version == chal_mv.version):
        promoted, reason = True, f"forced despite: {reason}"
    return promoted, reason


def _log_promotion(
    exp_id: str, decision: PromotionDecision, chal_mv, before: str, force: bool
) -> str:
    """The decision as a small MLflow run (+ ``promotion.json``); returns its run id."""
    import mlflow

    promoted, reason, figures = decision.promoted, decision.reason, decision.figures
    with _own_run(exp_id, f"promote v{chal_mv.version} vs {before}") as run:
        mlflow.set_tags({"kenshin.kind": "promote", "decision": "promoted" if promoted
                         else "rejected", "reason": reason[:5000]})  # fmt: skip
        mlflow.log_params({"challenger_version": chal_mv.version, "champion_version": before,
                           "challenger_run_id": chal_mv.run_id, "forced": str(force),
                           **flatten_config(decision.policy, "policy.")})  # fmt: skip
        metrics = {"promoted": float(promoted)}
        for r in figures.to_dict("records"):
            for k in ("challenger_auc", "champion_auc", "auc_drop", "challenger_ece",
                      "challenger_cal_slope"):  # fmt: skip
                if np.isfinite(r[k]):
                    metrics[f"{r['outcome']}.{k}"] = float(r[k])
        mlflow.log_metrics(metrics)
        decision.run_id = run.info.run_id
        mlflow.log_dict(decision.to_json(), "promotion.json")
        return run.info.run_id


def _record_decision(client, decision: PromotionDecision, chal_mv, before: str) -> None:
    """Tag the challenger's model version with the decision; promoted: move ``champion``."""
    tags = {"promotion.decision": "promoted" if decision.promoted else "rejected",
            "promotion.reason": decision.reason[:5000], "promotion.run_id": decision.run_id,
            "promotion.champion_before": before}  # fmt: skip
    for k, v in tags.items():
        client.set_model_version_tag(MODEL_NAME, chal_mv.version, k, v)
    if decision.promoted:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, chal_mv.version)
