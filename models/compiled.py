"""Compiled tree prediction (lleaves): LightGBM's own predictions, bit for bit, ≈ 6× faster.

lleaves turns each booster (cut at the iteration the engine predicts with) into machine code
for this CPU through LLVM. Trees compiled as code skip the node tables LightGBM walks, so a
booster predicts its rows about six times faster (bench/README.md "Compiled prediction").

Same bits, by construction and by check:
- every tree in one block (``fblocksize`` = the number of trees), so each row's trees are
  summed one after the other from 0, as LightGBM sums them (lleaves' default blocks of 34
  trees add the blocks' sums, which differs in the last bits);
- raw scores only: the risks use LightGBM's raw log-odds anyway, and the forecasts' quantile
  objective maps the raw score to itself; a booster with any other output transform, a
  categorical split or linear trees stays on LightGBM;
- before use, each compiled booster predicts :func:`check_rows` (values at, just above and
  around every split threshold, zeros and missing values) and must give LightGBM's bits on
  every row, or it stays on LightGBM (counted in :class:`CompileReport`).

Compilation takes ≈ 20 ms per tree, so the machine code is cached: one file per booster in
``<workdir>/compiled/``, named by the hash of the booster's model text, lleaves' and LLVM's
versions and this CPU, compiled by worker processes when missing. A cached file is loaded in
milliseconds; the check runs again on every load. The files are code this process runs, so the
folder is the owner's alone (0700, files 0600), as the work folder's MLflow models (pickles)
already must be.

:func:`booster_predict <models.train.booster_predict>` uses a compiled booster where
:func:`attach` put one; SHAP (``pred_contrib``) always comes from LightGBM.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.workers import die_with_parent

__all__ = [
    "CompileReport",
    "attach",
    "attached_cache",
    "available",
    "boosters_of",
    "check_rows",
    "compiled_for",
    "detach",
]

#: Output transforms under which LightGBM's prediction is its raw score.
_IDENTITY_OBJECTIVES = ("quantile", "regression", "regression_l1", "huber", "fair", "mape")

#: booster → {num_iteration: (compiled lleaves model, prediction = raw score)}.
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: id(engine) → (the engine, weakly; the cache folder :func:`attach` compiled it into); by id
#: because an engine (a dataclass) is not hashable.
_ATTACHED: dict[int, tuple[weakref.ref, Path]] = {}


@dataclass
class CompileReport:
    """What :func:`attach` did: boosters compiled now, loaded from the cache, left on LightGBM."""

    compiled: int = 0
    cached: int = 0
    trees: int = 0
    seconds: float = 0.0
    #: booster label → why it stays on LightGBM.
    on_lightgbm: dict[str, str] = field(default_factory=dict)

    @property
    def used(self) -> int:
        return self.compiled + self.cached


def boosters_of(engine) -> list[tuple[str, object, int]]:
    """(label, booster, num_iteration) of every booster ``engine`` predicts with (risk,
    forecast quantiles, and those of its glucose-pattern sub-engines)."""
    out: list[tuple[str, object, int]] = []

    def walk(e, prefix: str) -> None:
        for o, b in e.boosters.items():
            out.append((f"{prefix}{o}", b, int(e.best_iteration[o])))
        for item in getattr(e, "forecast_items", ()):
            for q, b, it in zip(e.quantiles, e.forecasts[item], e.forecast_iteration[item],
                                strict=True):  # fmt: skip
                out.append((f"{prefix}{item}_p{round(q * 100):02d}", b, int(it)))
        for p, sub in sorted((getattr(e, "pattern_engines", None) or {}).items()):
            walk(sub, f"{prefix}{p}/")

    walk(engine, "")
    return out


def compiled_for(booster, num_iteration: int | None, raw_score: bool):
    """The compiled model of ``booster`` at ``num_iteration`` (None: none attached, or its
    prediction is not its raw score and ``raw_score`` is False)."""
    by_iter = _COMPILED.get(booster)
    if not by_iter or (hit := by_iter.get(num_iteration)) is None:
        return None
    model, identity = hit
    return model if raw_score or identity else None


def attached_cache(engine) -> Path | None:
    """The cache folder of ``engine``'s compiled boosters (None: on LightGBM): where another
    process (a Spark worker) loads them from."""
    hit = _ATTACHED.get(id(engine))
    return hit[1] if hit is not None and hit[0]() is engine else None


def detach(engine) -> None:
    """Every booster of ``engine`` back on LightGBM."""
    for _, b, _ in boosters_of(engine):
        _COMPILED.pop(b, None)
    _ATTACHED.pop(id(engine), None)


def _objective(model_text: str) -> str:
    head = model_text.split("\nTree=", 1)[0]
    return next((ln.split("=", 1)[1] for ln in head.splitlines()
                 if ln.startswith("objective=")), "")  # fmt: skip


def _why_not(model_text: str) -> str | None:
    """Why a booster cannot be compiled to LightGBM's bits (None: it can)."""
    objective = _objective(model_text)
    if objective.split(" ", 1)[0] not in (*_IDENTITY_OBJECTIVES, "binary") or "sqrt" in objective:
        return f"objective {objective!r}"
    if "\nis_linear=1" in model_text:
        return "linear trees"
    if any(ln.startswith("num_cat=") and ln != "num_cat=0" for ln in model_text.splitlines()):
        return "categorical splits"
    return None


#: LightGBM reads every |value| ≤ this (its ``kZeroThreshold``, 1e-35 as a float) as 0.
_ZERO = float(np.float32(1e-35))


def _zero_aware(model_text: str) -> str:
    """``model_text`` with each threshold inside ±:data:`_ZERO` moved to where it sends
    LightGBM's zeros: a value that small is 0 to LightGBM (its splits around zero sit at
    −1e-35) but itself to the compiled comparison. Every other value goes the same way."""
    lines = model_text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("threshold="):
            continue
        values = line[len("threshold=") :].split()
        changed = False
        for j, v in enumerate(values):
            t = float(v)
            if -_ZERO <= t < 0:
                values[j], changed = repr(float(np.nextafter(-_ZERO, -np.inf))), True
            elif 0 <= t < _ZERO:
                values[j], changed = repr(_ZERO), True
        if changed:
            lines[i] = "threshold=" + " ".join(values)
    return "\n".join(lines)


def _cache_name(model_text: str) -> str:
    from importlib.metadata import version

    import llvmlite
    import llvmlite.binding as llvm

    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    key = "\n".join(
        [
            version("lleaves"),
            llvmlite.__version__,
            llvm.get_host_cpu_name(),
            features,
            "raw,one-block",
            model_text,
        ]  # fmt: skip
    )
    return hashlib.sha256(key.encode()).hexdigest()[:40] + ".o"


def _new_pass_manager() -> None:
    """lleaves 1.3 optimises with LLVM's legacy pass manager, which llvmlite ≥ 0.45 (the one
    numba needs) no longer has: the same optimisation (level 3) through the new pass manager,
    as lleaves' own fix does (siboehm/lleaves#97, not yet released)."""
    import llvmlite.binding as llvm
    from lleaves import compiler, llvm_binding
    from lleaves.compiler import tree_compiler

    if getattr(tree_compiler, "_kenshin_new_pm", False) or hasattr(llvm, "PassManagerBuilder"):
        return

    def initialize() -> None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()

    def compile_to_module(file_path, fblocksize=34, finline=True, raw_score=False,
                          froot_func_name="forest_root", use_fp64=True):  # fmt: skip
        import llvmlite.ir
        from lleaves.compiler.ast import parse_to_ast
        from lleaves.compiler.codegen import gen_forest

        initialize()
        forest = parse_to_ast(file_path)
        forest.raw_score = raw_score
        ir = llvmlite.ir.Module(name="forest")
        gen_forest(forest, ir, fblocksize, froot_func_name, use_fp64)
        ir.triple = llvm.get_process_triple()
        module = llvm.parse_assembly(str(ir))
        module.name = str(file_path)
        module.verify()
        machine = llvm.Target.from_triple(module.triple).create_target_machine(opt=3)
        tuning = llvm.create_pipeline_tuning_options(speed_level=3)
        passes = llvm.create_pass_builder(machine, tuning)
        passes.getModulePassManager().run(module, passes)
        return module

    llvm_binding._initialize_llvm = initialize
    tree_compiler.compile_to_module = compile_to_module
    compiler.compile_to_module = compile_to_module  # the name lleaves.Model calls
    tree_compiler._kenshin_new_pm = True


def _load(model_text: str, cache: Path, num_trees: int):
    """A compiled lleaves model of ``model_text`` from ``cache`` (compiled there if missing)."""
    import lleaves

    _new_pass_manager()
    with tempfile.TemporaryDirectory(prefix="kenshin-lleaves-") as tmp:
        text = Path(tmp) / "model.txt"
        text.write_text(model_text)
        model = lleaves.Model(model_file=str(text))
        if cache.exists():
            model.compile(cache=str(cache), raw_score=True, fblocksize=max(1, num_trees))
            return model
        part = cache.with_name(f".{cache.name}.{os.getpid()}.part")
        model.compile(cache=str(part), raw_score=True, fblocksize=max(1, num_trees))
        os.chmod(part, 0o600)  # machine code this process will run: the owner's alone
        os.replace(part, cache)  # whole or absent, whoever else compiles it meanwhile
        return model


def _compile_one(args: tuple[str, str, int]) -> str:
    model_text, cache, num_trees = args
    _load(model_text, Path(cache), num_trees)
    return cache


def _texts(engine) -> list[tuple[str, object, int, str]]:
    """(label, booster, iteration, model text at that iteration) of every booster of
    ``engine``: the text made once, for the plan and the check rows alike."""
    return [(label, b, it, b.model_to_string(num_iteration=it))
            for label, b, it in boosters_of(engine)]  # fmt: skip


#: Rows :func:`attach` checks each compiled booster on.
CHECK_ROWS = 512


def check_rows(engine, n: int = CHECK_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that reach both sides of every split of ``engine``'s boosters: each value is one
    of a split's threshold, the next float above it, zero, a tiny value, or missing."""
    return _rows_at_splits([t for *_, t in _texts(engine)], len(engine.feature_names), n, seed)


def _rows_at_splits(texts: list[str], k: int, n: int, seed: int) -> np.ndarray:
    """:func:`check_rows` of the boosters of model texts ``texts`` over ``k`` features."""
    thresholds: list[list[float]] = [[] for _ in range(k)]
    for text in texts:
        for line in text.splitlines():
            if line.startswith("split_feature="):
                feats = [int(v) for v in line.split("=", 1)[1].split()]
            elif line.startswith("threshold="):
                for f, t in zip(feats, line.split("=", 1)[1].split(), strict=True):
                    if len(thresholds[f]) < 64:
                        thresholds[f].append(float(t))
    rng = np.random.default_rng([seed, 0x6C6C76])
    X = np.empty((n, k))
    for j, ts in enumerate(thresholds):
        t = np.asarray(ts or [0.0])
        pick = t[rng.integers(0, len(t), size=n)]
        X[:, j] = np.where(rng.random(n) < 0.5, pick, np.nextafter(pick, np.inf))
        odd = rng.random(n)
        X[odd < 0.08, j] = np.nan
        X[(odd >= 0.08) & (odd < 0.12), j] = 0.0
        X[(odd >= 0.12) & (odd < 0.14), j] = 1e-36
    return X


def _plan(texts: list[tuple[str, object, int, str]], cache: Path) -> tuple[list, dict[str, str]]:
    """(label, booster, iteration, text to compile, cache file) of each booster of ``texts``
    (:func:`_texts`) that can be compiled, and why each other one cannot."""
    todo, why_not = [], {}
    for label, b, it, text in texts:
        why = _why_not(text)
        if why is not None:
            why_not[label] = why
            continue
        text = _zero_aware(text)
        todo.append((label, b, it, text, cache / _cache_name(text)))
    return todo, why_not


def available() -> str | None:
    """Why compiled prediction cannot run here (None: it can): lleaves and llvmlite import."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except ImportError as e:
        return f"{e.name or 'lleaves'} cannot be imported ({e})"
    return None


def all_cached(engine, cache: Path) -> bool:
    """Whether every booster of ``engine`` that can be compiled is in ``cache`` already."""
    if available() is not None:
        return False
    todo, _ = _plan(_texts(engine), Path(cache))
    return bool(todo) and all(path.exists() for *_, path in todo)


def attach(engine, cache: Path, workers: int = 1, check: np.ndarray | None = None) -> CompileReport:
    """Compile (or load from ``cache``) every booster of ``engine`` and use it for prediction
    where it gives LightGBM's bits on ``check`` (default :func:`check_rows`)."""
    import time

    start = time.perf_counter()
    report = CompileReport()
    cache = Path(cache)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    texts = _texts(engine)
    if check is None:
        check = _rows_at_splits([t for *_, t in texts], len(engine.feature_names), CHECK_ROWS, 0)
    todo, report.on_lightgbm = _plan(texts, cache)
    missing = [(text, str(path), it) for _, _, it, text, path in todo if not path.exists()]
    if missing:
        _new_pass_manager()
        if workers > 1 and len(missing) > 1:
            # the largest first, so the last to finish is a small one; a booster that fails
            # to compile is left out (loading it below says why)
            missing.sort(key=lambda m: -m[2])
            # workers die with the run (a kill -9 of it leaves no compiler behind)
            with ProcessPoolExecutor(
                min(workers, len(missing)), initializer=die_with_parent
            ) as pool:
                for job in [pool.submit(_compile_one, m) for m in missing]:
                    job.exception()
    fresh = {path for _, path, _ in missing}
    for label, b, it, text, path in todo:
        try:
            model = _load(text, path, it)
        except Exception as e:  # any failure leaves the booster on LightGBM
            report.on_lightgbm[label] = f"compile failed: {type(e).__name__}: {e}"[:200]
            continue
        want = b.predict(check, num_iteration=it, raw_score=True, num_threads=1)
        got = model.predict(check, n_jobs=1)
        if not np.array_equal(want.view(np.int64), got.view(np.int64)):
            report.on_lightgbm[label] = "compiled predictions differ from LightGBM's"
            continue
        identity = _objective(text).split(" ", 1)[0] in _IDENTITY_OBJECTIVES
        _COMPILED.setdefault(b, {})[it] = (model, identity)
        report.trees += it
        if str(path) in fresh:
            report.compiled += 1
        else:
            report.cached += 1
    _ATTACHED[id(engine)] = (weakref.ref(engine), cache)
    report.seconds = time.perf_counter() - start
    return report
