"""Validation at the public entry points: shapes, dtypes, finiteness, option strings.

Messages say what was expected, what came, and how to fix it. Checks of values (NaN/inf) run
only on concrete arrays; inside ``jax.jit`` they are skipped (a tracer has no values).
"""

from __future__ import annotations

import weakref
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

GETS = ("nngp", "ntk")


def is_concrete(x) -> bool:
    """``True`` unless ``x`` is a JAX tracer (inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(x, name: str):
    """``x`` as a floating JAX array; integers and bools become the default float dtype."""
    if x is None:
        raise TypeError(f"`{name}` must be an array, got None.")
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except Exception as e:  # pragma: no cover - exotic inputs
            raise TypeError(f"`{name}` must be array-like, got {type(x).__name__}.") from e
    dt = np.dtype(x.dtype)
    if dt.kind in "biu":
        x = jnp.asarray(x, dtype=jnp.result_type(float))
    elif dt.kind == "c":
        raise TypeError(f"`{name}` must be real; got complex dtype {dt}. Pass the real part "
                        "or split real and imaginary parts into features.")
    elif dt.kind != "f":
        raise TypeError(f"`{name}` must be a numeric array; got dtype {dt}.")
    else:
        x = jnp.asarray(x)
    return x


#: arrays up to this many entries that live on the host (NumPy arrays, JAX arrays on the CPU)
#: are checked for NaN/inf by NumPy: about 1 ms per million entries and nothing to compile,
#: where a jitted check compiles once per shape (0.05-0.1 s each; the first fit of an
#: estimator compiled five)
HOST_CHECK_MAX = 1 << 23


def _on_host(x):
    """``x`` as a NumPy array when it is one, or a concrete JAX array on the CPU, of at most
    `HOST_CHECK_MAX` entries; otherwise ``None`` (checked by a jitted reduction instead)."""
    if not hasattr(x, "size") or x.size > HOST_CHECK_MAX:
        return None
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, jax.Array) and is_concrete(x) and \
            all(d.platform == "cpu" for d in x.devices()):
        return np.asarray(x)
    return None


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))  # one fused reduction, no N x N boolean array


@jax.jit
def _sum_finite(arrays):
    return jnp.isfinite(sum(jnp.sum(a) for a in arrays))


#: entries closer than this are equal when deciding whether ``x2`` is ``x1`` (neural-tangents'
#: rule for ``x1_is_x2``)
SAME_INPUTS_EPS = 1e-12


def same_inputs(a, b) -> bool:
    """Whether ``b`` is ``a`` for a kernel: the same object, or concrete arrays of one shape
    whose entries differ by less than `SAME_INPUTS_EPS` (NaN equal to NaN, for masked inputs).
    Traced arrays are the same only as the same tracer: their values are not known."""
    if a is b:
        return True
    if a is None or b is None or not (is_concrete(a) and is_concrete(b)):
        return False
    if np.shape(a) != np.shape(b):
        return False
    ha, hb = _on_host(a), _on_host(b)
    if ha is not None and hb is not None:
        return bool(np.all((np.abs(ha - hb) < SAME_INPUTS_EPS) | (np.isnan(ha) & np.isnan(hb))))
    return bool(_all_close(jnp.asarray(a), jnp.asarray(b)))


@jax.jit
def _all_close(a, b):
    return jnp.all((jnp.abs(a - b) < SAME_INPUTS_EPS) | (jnp.isnan(a) & jnp.isnan(b)))


#: JAX arrays already shown to hold no NaN/inf, by weak reference (JAX arrays are immutable,
#: so the answer stays true; NumPy arrays can change in place and are checked every time): an
#: ensemble prediction checked its training inputs four times and its training kernel once
#: more after the kernel's own check
_FINITE: dict = {}


def mark_finite(x):
    """Remember that the concrete JAX array ``x`` holds no NaN/inf (`check_finite` then
    passes it at once)."""
    if isinstance(x, jax.Array) and is_concrete(x):
        key = id(x)
        _FINITE[key] = weakref.ref(x, lambda _, key=key: _FINITE.pop(key, None))


def known_finite(x) -> bool:
    """Whether ``x`` is a JAX array marked by `mark_finite` (the very object)."""
    ref = _FINITE.get(id(x))
    return ref is not None and ref() is x


def check_finite(x, name: str):
    if not is_concrete(x) or known_finite(x):
        return
    # A concrete array can reach here inside someone's jit (a closed-over constant): evaluate
    # the check eagerly rather than as part of the trace.
    host = _on_host(x)
    if host is not None:
        bad = int(host.size - np.count_nonzero(np.isfinite(host)))
    else:
        with jax.ensure_compile_time_eval():
            finite = bool(_all_finite(x))
            bad = 0 if finite else int(jnp.sum(~jnp.isfinite(x)))
    if not bad:
        mark_finite(x)
        return
    raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s); kernels of such "
                     "inputs are undefined. Remove or impute them first (e.g. "
                     "sklearn.impute.SimpleImputer).")


def check_kernel_finite(k, network: str, x1, x2=None):
    """Raise a clear ``ValueError`` when a kernel computed from concrete inputs holds NaN or
    inf (overflow of large inputs in the working precision, or a network whose kernel is
    undefined); a no-op inside ``jit``."""
    arrays = [a for a in jax.tree.leaves(k) if hasattr(a, "dtype")]
    if not arrays or not all(is_concrete(a) for a in arrays):
        return
    host = [_on_host(a) for a in arrays]
    if all(h is not None for h in host):
        if all(np.isfinite(h).all() for h in host):
            return
    with jax.ensure_compile_time_eval():
        # one vectorized pass: a finite sum means every entry is finite; only a non-finite
        # sum (NaN/inf, or an overflow of the sum itself) gets the exact, slower check
        if bool(_sum_finite(arrays)) or all(bool(_all_finite(a)) for a in arrays):
            return
        big = max(float(jnp.max(jnp.abs(x))) for x in (x1, x2) if x is not None)
    dt = np.dtype(arrays[0].dtype)
    raise ValueError(
        f"the kernel of {network} is NaN or infinite for these inputs. Inputs as large as "
        f"{big:.3g} overflow in {dt.name} (largest {float(np.finfo(dt).max):.3g}, and kernels "
        "square the inputs): rescale them (e.g. sklearn.preprocessing.StandardScaler)"
        + (" or compute in float64 (JAX_ENABLE_X64=1)" if dt == np.float32 else "")
        + ". If the inputs are moderate, a layer's hyperparameters or activation make the "
        "kernel undefined.")


def check_inputs(x1, x2, ndim: Optional[int] = 2):
    """Validate ``x1`` (N1, d) and ``x2`` (N2, d) or None; return float arrays of one dtype."""
    x1 = as_float_array(x1, "x1")
    if x2 is not None:
        x2 = as_float_array(x2, "x2")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            continue
        if ndim is not None and x.ndim != ndim:
            hint = (" Flatten each example first, e.g. `x.reshape(len(x), -1)`." if x.ndim > ndim
                    else " Add a batch axis, e.g. `x[None]` for one example or `x[:, None]` for "
                    "one feature.")
            raise ValueError(f"`{name}` must have shape (N, d) with {ndim} axes (examples, "
                             f"features); got shape {tuple(x.shape)}.{hint}")
        if 0 in x.shape:
            raise ValueError(f"`{name}` is empty (shape {tuple(x.shape)}); kernels need at least "
                             "one example with at least one feature.")
        check_finite(x, name)
    if x2 is not None:
        if x1.shape[1:] != x2.shape[1:]:
            raise ValueError(f"`x1` and `x2` must have the same feature shape; got x1 "
                             f"{tuple(x1.shape)} and x2 {tuple(x2.shape)}. Both must be "
                             "(N, d) with the same d (or (N, *S, C) images with the same "
                             "spatial shape S and channels C).")
        dt = jnp.result_type(x1.dtype, x2.dtype)
        x1, x2 = x1.astype(dt), x2.astype(dt)
    return x1, x2


def check_square(k, name: str, what: str = "kernel matrix of the training points"):
    """``k`` as a float array of shape ``(N, N)``; raises with its actual shape otherwise."""
    k = as_float_array(k, name)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"`{name}` must be a square (N, N) {what}; got shape "
                         f"{tuple(k.shape)}.")
    return k


def normalize_get(get, variances: bool = False) -> tuple:
    """``get`` as ``(tuple_of_names, single)``; ``single`` means return a bare array.
    ``variances``: ``'cov1'``/``'cov2'`` (the per-example variances) may be asked for too."""
    if get is None:
        return GETS, False
    allowed = GETS + (("cov1", "cov2") if variances else ())
    what = "'nngp', 'ntk'" + (", 'cov1', 'cov2'" if variances else "")
    if isinstance(get, str):
        if get not in allowed:
            raise ValueError(f"`get` must be one of {what} or a tuple of them; got {get!r}.")
        return (get,), True
    try:
        names = tuple(get)
    except TypeError:
        raise TypeError("`get` must be a string or a tuple of strings; got "
                        f"{type(get).__name__}.") from None
    bad = [g for g in names if g not in allowed]
    if bad or not names:
        raise ValueError(f"`get` must name some of {what}; got {get!r}"
                         + (f" (unknown: {bad})." if bad else " (empty)."))
    return tuple(dict.fromkeys(names)), False


#: what a posterior predicts: ``'nngp'`` the Bayesian posterior of the NNGP prior (or an
#: infinitely wide network whose readout alone is trained), ``'ntk'`` the infinitely wide
#: network trained by gradient descent on MSE (all layers), ``'ntkgp'`` the Bayesian posterior
#: with the NTK as the prior
MODES = ("nngp", "ntk", "ntkgp")
#: optimizers of finite networks (`ntkgp.train.make_optimizer`); the first three have closed
#: forms at infinite width
OPTIMIZERS = ("gd", "sgd", "momentum", "adam")


def check_mode(mode) -> str:
    """``mode`` if it is one of `MODES`, else a ``ValueError`` saying what each means."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}. 'nngp': Bayesian "
                         "posterior with the NNGP prior; 'ntk': infinitely wide network trained "
                         "by gradient descent (needs NNGP and NTK); 'ntkgp': Bayesian posterior "
                         "with the NTK as prior.")
    return mode


def check_targets(y, n: int, name: str = "y_train"):
    """``(y2d, was_1d)``: ``y`` of shape ``(n,)`` or ``(n, K)`` as a float array ``(n, K)``."""
    y = as_float_array(y, name)
    if y.ndim not in (1, 2):
        raise ValueError(f"`{name}` must have shape (N,) or (N, K) (K outputs); got shape "
                         f"{tuple(y.shape)}.")
    if y.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} rows, one per training point of the kernel; "
                         f"got shape {tuple(y.shape)}.")
    if y.size == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(y.shape)}).")
    check_finite(y, name)
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def check_choice(value, name: str, choices: Sequence[str]):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")
    return value


def check_scalar(value, name: str, low: Optional[float] = None, strict: bool = False,
                 allow_none: bool = False):
    """A real scalar hyperparameter: a number (``TypeError`` otherwise, naming ``name``) that
    is finite and at least ``low`` (above it when ``strict``); tracers pass unchecked, so
    gradients and ``jit`` work."""
    if value is None:
        if allow_none:
            return value
        raise TypeError(f"`{name}` must be a number, got None.")
    if isinstance(value, (str, bytes, bool)) or not (
            isinstance(value, (int, float, np.number)) or hasattr(value, "dtype")):
        raise TypeError(f"`{name}` must be a number; got {type(value).__name__} {value!r}"
                        + (f". Pass {name}={value.strip()} without quotes."
                           if isinstance(value, str) else "."))
    if is_concrete(value):
        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf" or arr.shape != ():
            raise TypeError(f"`{name}` must be a real scalar; got {value!r} (dtype "
                            f"{arr.dtype}, shape {arr.shape}).")
        if not np.isfinite(arr) or (low is not None and (arr < low or (strict and arr == low))):
            what = ("number" if low is None else f"number {'>' if strict else '>='} {low:g}")
            raise ValueError(f"`{name}` must be a finite {what}; got {value!r}.")
    return value


def check_nonneg(value, name: str, allow_none: bool = False):
    """A non-negative scalar hyperparameter (skipped for tracers, so gradients work)."""
    return check_scalar(value, name, low=0.0, allow_none=allow_none)


def check_int(value, name: str, low: int = 1):
    """``value`` as an int, which must be a whole number (not a bool) and at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    return int(value)


def check_positive_int(value, name: str):
    """``value`` as an int >= 1 (`check_int`)."""
    return check_int(value, name, 1)


def check_feature_count(input_shape, layer: str) -> int:
    """The last axis of ``input_shape`` (features or channels) as a positive int."""
    try:
        n = input_shape[-1]
    except (TypeError, IndexError):
        raise ValueError(f"{layer}: `input_shape` must be a tuple like (batch, features); got "
                         f"{input_shape!r}.") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{layer}: the inputs' last axis (features or channels) must have "
                         f"size >= 1; got input_shape {tuple(input_shape)}. Inputs need at "
                         "least one feature.")
    return int(n)


def check_batch_channel(who: str, batch_axis, channel_axis):
    """ntkgp's layers take batch-first, channels-last inputs: neural-tangents' ``batch_axis``
    and ``channel_axis`` arguments are accepted with those values only."""
    if batch_axis != 0 or channel_axis != -1:
        raise ValueError(f"{who}: ntkgp's layers take batch-first, channels-last inputs "
                         f"(batch_axis=0, channel_axis=-1); got batch_axis={batch_axis}, "
                         f"channel_axis={channel_axis}. Transpose the inputs to (N, ..., C).")


def check_loss(loss, y):
    """``loss`` must be a function ``loss(outputs, targets) -> scalar`` of arrays shaped like
    the targets ``y`` (checked abstractly, nothing is computed)."""
    if not callable(loss):
        raise TypeError(f"`loss` must be a function loss(outputs, targets) -> scalar; got "
                        f"{type(loss).__name__}.")
    spec = jax.ShapeDtypeStruct(y.shape, y.dtype)
    try:
        out = jax.eval_shape(loss, spec, spec)
    except Exception as e:  # the user's function: any error means it does not fit
        raise TypeError(f"`loss` must be a function loss(outputs, targets) -> scalar of two "
                        f"arrays of the targets' shape {tuple(y.shape)}; calling it failed "
                        f"({type(e).__name__}: {e}).") from None
    if not hasattr(out, "shape") or out.shape != ():
        raise TypeError(f"`loss(outputs, targets)` must return a scalar (the gradient flow "
                        f"follows its gradient); it returned {out}.")
