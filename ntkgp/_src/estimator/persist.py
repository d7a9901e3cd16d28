r"""Fitted estimators saved as data only: a ``.npz`` file of arrays and one JSON description.

A model file holds the estimator's class name (one of four), its constructor arguments (plain
numbers and strings), the fitted hyperparameters, the training inputs and targets it solved
with, its small fitted arrays (target scaling, class labels, a ``StandardScaler``'s mean and
scale), the precision it was fitted in, and a SHA-256 of every array. Loading reads it with
``allow_pickle=False``, checks all of that before building anything, and then rebuilds the
estimator by factorizing its training kernel at the saved hyperparameters (no new fit of
them): the same numbers as the model that was saved, and nothing in the file can run code.

``pickle``/``joblib`` also work on the estimators, but a pickle file is a program: loading one
runs whatever it contains. Load pickles only from sources you trust; share models as
`save_model` files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
from typing import Optional

import jax
import numpy as np

from ntkgp._src.estimator.base import AUTO_ACTIVATIONS, NAMES, PrecisionWarning
from ntkgp._src.estimator.classifier import NNGPClassifier, NTKClassifier
from ntkgp._src.estimator.regressor import NNGPRegressor, NTKRegressor
from ntkgp._src.util import write_atomic

FORMAT = "ntkgp-model/2"
CLASSES = {c.__name__: c for c in (NTKRegressor, NNGPRegressor, NTKClassifier, NNGPClassifier)}
_SIMPLE = (str, int, float, bool, type(None))


class ModelFileError(ValueError):
    """A model file that is not a valid, unchanged `save_model` file."""


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _parts(model):
    """``(scaler or None, estimator)`` of an estimator or a ``Pipeline(StandardScaler, est)``."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(model, Pipeline):
        steps = [s for _, s in model.steps]
        if len(steps) == 2 and type(steps[0]) is StandardScaler and type(steps[1]) in \
                CLASSES.values():
            return steps[0], steps[1]
    elif type(model) in CLASSES.values():
        return None, model
    raise TypeError("save_model takes a fitted NTKRegressor, NNGPRegressor, NTKClassifier or "
                    "NNGPClassifier, or a Pipeline of a StandardScaler and one of them; got "
                    f"{model!r}.")


def save_model(model, path: str, info: Optional[dict] = None, overwrite: bool = False) -> None:
    """Save a fitted estimator (or ``Pipeline(StandardScaler, estimator)``) as data only.

    Args:
        model: the fitted model.
        path: the file to write (``.npz`` content whatever its name); written atomically.
        info: a dict of JSON values stored with the model (e.g. feature names).
        overwrite: replace an existing file (else an existing ``path`` is an error).

    Returns:
        ``None``.

    Raises:
        TypeError: for another kind of model, or one built with ``network=`` (a Python
            object that cannot be stored as data; pickle it, see the module's note).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from sklearn.utils.validation import check_is_fitted

    scaler, est = _parts(model)
    check_is_fitted(est, "posterior_")
    params = est.get_params()
    if params.pop("network") is not None:
        raise TypeError("a model built with `network=` holds Python code and cannot be saved "
                        "as data; rebuild it from the architecture arguments, or pickle it "
                        "(and load that pickle only where you trust its source).")
    if not isinstance(params["random_state"], (int, type(None))):
        params["random_state"] = None  # only the (already done) hyperparameter fit used it
    bad = [k for k, v in params.items() if not isinstance(v, _SIMPLE)]
    if bad:
        raise TypeError(f"cannot save arguments {bad} of {type(est).__name__} as data.")
    arrays = {"X_train": est.X_train_, "targets": est.targets_}
    extra = {"y_1d": bool(getattr(est, "_y_1d", False)), "depth": int(est._depth()),
             "activation": est._activation()}
    if hasattr(est, "y_mean_"):
        arrays.update(y_mean=est.y_mean_, y_scale=est.y_scale_)
    if hasattr(est, "classes_"):
        classes = np.asarray(est.classes_)
        if classes.dtype == object:
            classes = classes.astype(str)
        arrays["classes"] = classes
    if est.posterior_.alpha is not None:  # a matrix-free solve: its solution is the model
        arrays["alpha"] = est.posterior_.alpha
    if scaler is not None:
        arrays.update(scaler_mean=scaler.mean_, scaler_scale=scaler.scale_,
                      scaler_var=scaler.var_)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype.kind not in "fiubU":
            raise TypeError(f"cannot save `{k}` of dtype {v.dtype} as data.")
    meta = {"format": FORMAT, "version": _version(), "estimator": type(est).__name__,
            "params": params, "hyperparameters": dict(est.hyperparameters_),
            "dtype": est.X_train_.dtype.name, "solver": est.solver_, "extra": extra,
            "info": info or {},
            "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": _digest(v)}
                       for k, v in arrays.items()}}
    text = json.dumps(meta, allow_nan=False)
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True (CLI: --force) to replace "
                              "it.")
    write_atomic(path, lambda fh: np.savez(fh, _meta=np.asarray(text), **arrays))


def _version():
    from ntkgp._version import __version__
    return __version__


@dataclasses.dataclass(frozen=True)
class SavedModel:
    """A model file read and checked, not yet built (`read_model`).

    Attributes:
        path: the file.
        estimator: the class name.
        params: the constructor arguments.
        hyperparameters: the fitted ``W_std``, ``b_std``, ``diag_reg``.
        dtype: ``'float32'`` or ``'float64'``, the precision it was fitted in.
        info: the ``info`` dict given to `save_model`.
        version: the ntkgp version that saved it.
        arrays: the checked arrays.
        extra: small fitted values (whether the targets were 1-D).
        solver: ``'cholesky'``, ``'eigh'``, ``'cg'``, ``'features'`` or ``'nystrom'``, the solver it
            used.
    """

    path: str
    estimator: str
    params: dict
    hyperparameters: dict
    dtype: str
    info: dict
    version: str
    arrays: dict
    extra: dict
    solver: str

    def build(self):
        """The fitted model (a ``Pipeline`` when a scaler was saved), computed in the saved
        precision; warns `PrecisionWarning` when that is float64 and JAX runs without x64
        (the model is then rebuilt in float32)."""
        a = self.arrays
        x = a["X_train"]
        if x.dtype == np.float64 and not jax.config.read("jax_enable_x64"):
            warnings.warn(f"the model {self.path!r} was fitted in float64 but JAX runs in "
                          "float32 (x64 off): it is rebuilt in float32, and its predictions "
                          "differ from the saved model's at float32 accuracy. Enable x64 "
                          "(JAX_ENABLE_X64=1; the CLI does so itself) for the saved "
                          "precision.", PrecisionWarning, stacklevel=2)
            x = x.astype(np.float32)
        est = CLASSES[self.estimator](**self.params)
        est.n_features_in_ = x.shape[1]
        # the depth and activation the fit used (for 'auto', the ones it chose)
        est.depth_ = self.extra["depth"] if est.depth == "auto" else est.depth
        est.activation_ = self.extra["activation"] if est.activation == "auto" else \
            est.activation
        if "classes" in a:
            est.classes_ = a["classes"]
        if "y_mean" in a:
            est.y_mean_, est.y_scale_ = a["y_mean"], a["y_scale"]
            est._y_1d = bool(self.extra.get("y_1d"))
        est._factor(x, a["targets"].astype(x.dtype), dict(self.hyperparameters),
                    alpha=a.get("alpha"), solver=self.solver)
        if "scaler_mean" not in a:
            return est
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = (a["scaler_mean"], a["scaler_scale"],
                                                    a["scaler_var"])
        scaler.n_features_in_ = x.shape[1]
        scaler.n_samples_seen_ = x.shape[0]
        return make_pipeline(scaler, est)


def read_model(path: str) -> SavedModel:
    """Read and check a `save_model` file without building the model (and without running
    anything the file could contain).

    Args:
        path: the file.

    Returns:
        A `SavedModel`; ``.build()`` gives the fitted model.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a model file, a damaged or changed one (checksums), or one whose
            description does not fit its arrays; the message says which.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}; make one with `ntkgp fit` or "
                                "ntkgp.estimator.save_model.")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        old = head[:1] == b"\x80" or head[:2] in (b"x\x9c", b"x\x01", b"x\xda")
        raise ModelFileError(
            f"{path!r} is not an ntkgp model file (expected the .npz written by `ntkgp fit` or "
            "save_model)."
            + (" It looks like a pickle/joblib file, as ntkgp wrote before: such files run "
               "code when loaded, so ntkgp does not load them. Fit the model again with "
               "`ntkgp fit` (or, if you trust its source, joblib.load it yourself and "
               "save_model it)." if old else ""))
    try:
        with np.load(path, allow_pickle=False) as z:
            files = dict((k, z[k]) for k in z.files)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ModelFileError(f"{path!r} is damaged or not an ntkgp model file "
                             f"({type(e).__name__}: {e}).") from None
    try:
        meta = json.loads(str(files.pop("_meta")))
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path!r} has no readable model description ({e}); it is not "
                             "a file written by ntkgp's save_model.") from None
    return _check(path, meta, files)


def _fail(path, what):
    raise ModelFileError(f"{path!r}: {what}; the file is damaged or was changed after it was "
                         "saved. Fit the model again (`ntkgp fit`).")


def _check(path, meta, files) -> SavedModel:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFileError(f"{path!r} is not an ntkgp model of format {FORMAT!r} (its format "
                             f"is {got!r}); fit it again with this version of ntkgp.")
    name = meta.get("estimator")
    if name not in CLASSES:
        _fail(path, f"unknown estimator {name!r} (expected one of {sorted(CLASSES)})")
    params = meta.get("params")
    allowed = set(CLASSES[name]().get_params()) - {"network"}
    if not isinstance(params, dict) or set(params) - allowed or \
            not all(isinstance(v, _SIMPLE) for v in params.values()):
        _fail(path, f"the estimator's arguments are not plain values of {name}")
    hp = meta.get("hyperparameters")
    if not isinstance(hp, dict) or set(hp) != set(NAMES) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            and v >= 0 for v in hp.values()):
        _fail(path, f"the hyperparameters must be finite numbers >= 0 named {NAMES}")
    declared = meta.get("arrays")
    if not isinstance(declared, dict) or set(declared) != set(files):
        _fail(path, "its arrays are not the ones its description lists")
    for k, v in files.items():
        d = declared[k]
        if not isinstance(d, dict) or d.get("shape") != list(v.shape) or \
                d.get("dtype") != v.dtype.str or d.get("sha256") != _digest(v):
            _fail(path, f"the array `{k}` does not match its checksum, shape or dtype")
    x, y = files.get("X_train"), files.get("targets")
    if x is None or y is None or x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or \
            x.dtype.name not in ("float32", "float64") or x.dtype.name != meta.get("dtype"):
        _fail(path, "the training inputs and targets are not (N, d) and (N, K) float arrays")
    for k, v in files.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            _fail(path, f"the array `{k}` holds NaN or inf")
    k_out = y.shape[1]
    is_cls = name.endswith("Classifier")
    need = {"classes"} if is_cls else {"y_mean", "y_scale"}
    if need - set(files):
        _fail(path, f"{name} needs the arrays {sorted(need)}")
    if is_cls and files["classes"].shape != (k_out,):
        _fail(path, "the class labels do not match the targets")
    if not is_cls and (files["y_mean"].shape != (k_out,) or files["y_scale"].shape != (k_out,)):
        _fail(path, "the target scaling does not match the targets")
    scaler = {"scaler_mean", "scaler_scale", "scaler_var"} & set(files)
    if scaler and (len(scaler) < 3 or any(files[s].shape != (x.shape[1],) for s in scaler)
                   or np.any(files["scaler_scale"] <= 0)):
        _fail(path, "the StandardScaler's arrays do not match the inputs")
    if "alpha" in files and files["alpha"].shape != y.shape:
        _fail(path, "the saved CG solution does not match the targets")
    info, extra = meta.get("info", {}), meta.get("extra", {})
    if not isinstance(info, dict) or not isinstance(extra, dict):
        _fail(path, "its info is not a JSON object")
    depth = extra.get("depth")
    if params.get("depth") == "auto" and (isinstance(depth, bool) or not isinstance(depth, int)
                                          or depth < 1):
        _fail(path, "it was fitted with depth='auto' but does not say which depth it chose")
    if params.get("activation") == "auto" and extra.get("activation") not in AUTO_ACTIVATIONS:
        _fail(path, "it was fitted with activation='auto' but does not say which activation "
              "it chose")
    solver = meta.get("solver")
    if solver not in ("cholesky", "eigh", "cg", "features", "nystrom") or \
            (solver == "cg") != ("alpha" in files):
        _fail(path, f"unknown solver {solver!r}")
    return SavedModel(path, name, params, hp, x.dtype.name, info, str(meta.get("version")),
                      files, extra, solver)


def load_model(path: str):
    """The model saved by `save_model` (read, checked, then rebuilt; see `read_model`).

    Args:
        path: the file.

    Returns:
        The fitted estimator, or ``Pipeline(StandardScaler, estimator)``.
    """
    return read_model(path).build()
