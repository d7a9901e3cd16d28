"""Validation at the public entry points: shapes, dtypes, finiteness, option strings.

Messages say what was expected, what came, and how to fix it. Checks of values (NaN/inf) run
only on concrete arrays; inside ``jax.jit`` they are skipped (a tracer has no values).
"""

from __future__ import annotations

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


@jax.jit
def _all_finite(x):
    return jnp.all(jnp.isfinite(x))  # one fused reduction, no N x N boolean array


def check_finite(x, name: str):
    if not is_concrete(x):
        return
    # A concrete array can reach here inside someone's jit (a closed-over constant): evaluate
    # the check eagerly rather than as part of the trace.
    with jax.ensure_compile_time_eval():
        finite = bool(_all_finite(x))
        bad = 0 if finite else int(jnp.sum(~jnp.isfinite(x)))
    if bad:
        raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s); kernels of such "
                         "inputs are undefined. Remove or impute them first (e.g. "
                         "sklearn.impute.SimpleImputer).")


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


def normalize_get(get) -> tuple:
    """``get`` as ``(tuple_of_names, single)``; ``single`` means return a bare array."""
    if get is None:
        return GETS, False
    if isinstance(get, str):
        if get not in GETS:
            raise ValueError(f"`get` must be 'nngp', 'ntk' or a tuple of them; got {get!r}.")
        return (get,), True
    try:
        names = tuple(get)
    except TypeError:
        raise TypeError("`get` must be a string or a tuple of strings; got "
                        f"{type(get).__name__}.") from None
    bad = [g for g in names if g not in GETS]
    if bad or not names:
        raise ValueError(f"`get` must name 'nngp' and/or 'ntk'; got {get!r}"
                         + (f" (unknown: {bad})." if bad else " (empty)."))
    return tuple(dict.fromkeys(names)), False


def check_choice(value, name: str, choices: Sequence[str]):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}; got {value!r}.")
    return value


def check_nonneg(value, name: str, allow_none: bool = False):
    """A non-negative scalar hyperparameter (skipped for tracers, so gradients work)."""
    if value is None:
        if allow_none:
            return value
        raise TypeError(f"`{name}` must be a non-negative number, got None.")
    if is_concrete(value):
        arr = np.asarray(value)
        if arr.shape != () or not np.isfinite(arr) or arr < 0:
            raise ValueError(f"`{name}` must be a finite non-negative scalar; got {value!r}.")
    return value


def check_positive_int(value, name: str):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)
