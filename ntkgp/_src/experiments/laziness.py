r"""The laziness scale: one width, the model :math:`\alpha\,(f(x,\theta) - f(x,\theta_0))`.

Chizat, Oyallon & Bach (2019) showed that the kernel regime is a matter of scale, not only of
width: training :math:`\alpha\,(f - f_0)` on the loss divided by :math:`\alpha^2` leaves the
tangent-space dynamics unchanged, but the parameters move by :math:`O(1/\alpha)`, so a large
:math:`\alpha` is lazy (the network stays its linearization) and a small one is not.
`laziness_sweep` runs `width_sweep` at one width for several :math:`\alpha`.

The parameterization sets that scale as the width grows: `parameterization_sweep` runs the
same width sweep in the NTK, the standard and the maximal-update (μP) parameterization, where
the last is the laziness scale :math:`\alpha = n^{-1/2}` and does not become lazy.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, ClassVar, Optional, Sequence

from ntkgp._src.experiments.compare import (
    DISTANCES,
    PARAMETERIZATIONS,
    SweepResult,
    WidthResult,
    width_sweep,
)
from ntkgp._src.experiments.metrics import slope
from ntkgp._src.progress import progress_bar
from ntkgp._src.util import RowsJson


@dataclasses.dataclass
class LazinessResult(RowsJson):
    """One `WidthResult` per laziness scale; ``to_json``/``from_json`` round-trip it.

    Attributes:
        width, seeds, steps, learning_rate: the settings.
        alphas: the scales, one per row.
        rows: `WidthResult` of each scale (centered networks: (b) is the distance to the
            deterministic NTK mean).
        slopes: log-log slope of each distance against :math:`\\alpha` (kernel regime:
            (a) falls like :math:`1/\\alpha`).
        info: labels set by the caller.
    """

    ROW: ClassVar[type] = WidthResult

    width: int
    seeds: int
    steps: int
    learning_rate: float
    alphas: list
    rows: list
    slopes: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)


def laziness_sweep(make_net, width: int, x_train, y_train, x_test, y_test, *,
                   alphas: Sequence[float] = (0.1, 0.3, 1.0, 3.0, 10.0), seeds: int = 4,
                   steps: int = 100, learning_rate: Optional[float] = None, key=None,
                   show_progress: bool = True, info: Optional[dict] = None,
                   callback=None) -> LazinessResult:
    r"""`width_sweep` at one width for each laziness scale :math:`\alpha` (squared error,
    full-batch gradient descent, centered networks, the same step for every :math:`\alpha`).

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network in the NTK
            parameterization.
        width: the hidden width.
        x_train: inputs ``(N, ...)``; y_train: targets ``(N, K)``.
        x_test: inputs ``(M, ...)``; y_test: targets ``(M, K)``.
        alphas: the scales, each > 0.
        seeds: networks per scale.
        steps: gradient-descent steps.
        learning_rate: default `width_sweep`'s (half the largest stable step of the NTK).
        key: PRNG key (the same initializations for every scale).
        show_progress: a progress bar over scales.
        info: labels stored in the result.
        callback: called with the partial result after each scale.

    Returns:
        A `LazinessResult`.

    References:
        Chizat, Oyallon & Bach 2019, "On lazy training in differentiable programming",
        https://arxiv.org/abs/1812.07956.
    """
    alphas = [float(a) for a in alphas]
    if not alphas or min(alphas) <= 0:
        raise ValueError(f"`alphas` must be positive scales, e.g. (0.1, 1, 10); got {alphas}.")
    result = None
    for a in progress_bar(alphas, total=len(alphas), desc="alphas", enabled=show_progress):
        res = width_sweep(make_net, [width], x_train, y_train, x_test, y_test, seeds=seeds,
                          steps=steps, learning_rate=learning_rate, alpha=a, key=key,
                          show_progress=False)
        if result is None:
            result = LazinessResult(width=width, seeds=res.seeds, steps=res.steps,
                                    learning_rate=res.learning_rate, alphas=[], rows=[],
                                    info=dict(info or {}))
        result.alphas.append(a)
        result.rows.append(res.rows[0])
        result.slopes = {name: slope(result.alphas, [getattr(r, name) for r in result.rows])
                         for name in DISTANCES}
        if callback is not None:
            callback(result)
    return result


def parameterization_sweep(make_net: Callable[..., object], widths: Sequence[int], x_train,
                           y_train, x_test, y_test, *,
                           parameterizations: Sequence[str] = PARAMETERIZATIONS,
                           callback: Optional[Callable[[dict], None]] = None,
                           show_progress: bool = True, **kwargs) -> dict:
    r"""The same `width_sweep` in several parameterizations: where the kernel regime holds
    as the width grows (NTK, standard at a step :math:`\propto 1/n`) and where it does not
    (maximal update, μP: the features move at every width).

    Args:
        make_net: ``make_net(width, parameterization)`` returns the network with
            ``nn.Dense``/``nn.Conv`` layers in ``parameterization`` (``'ntk'`` or
            ``'standard'``; ``'mup'`` trains the ``'ntk'`` network, see `width_sweep`).
        widths: hidden widths.
        x_train, y_train, x_test, y_test: the data, as in `width_sweep`.
        parameterizations: a subset of ``('ntk', 'standard', 'mup')``, run in this order.
        callback: called with the dict of finished (and the running, partial) sweeps after
            each width.
        show_progress: a progress bar over widths.
        **kwargs: the other arguments of `width_sweep` (seeds, steps, optimizer, ...; the
            same initializations for every parameterization).

    Returns:
        A dict from parameterization to its `SweepResult`; `sweeps_to_json` writes it.
    """
    parameterizations = list(parameterizations)
    if not parameterizations:
        raise ValueError("`parameterizations` must list at least one of "
                         f"{', '.join(PARAMETERIZATIONS)}.")
    for p in parameterizations:
        if p not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {p!r}; choose from "
                             f"{', '.join(PARAMETERIZATIONS)}.")
    done: dict = {}
    for p in parameterizations:
        built = "standard" if p == "standard" else "ntk"

        def partial(res, p=p):
            if callback is not None:
                callback({**done, p: res})

        done[p] = width_sweep(lambda w, built=built: make_net(w, built), widths, x_train,
                              y_train, x_test, y_test, parameterization=p, callback=partial,
                              show_progress=show_progress, **kwargs)
    return done


def sweeps_to_json(sweeps: dict) -> str:
    """JSON text of a dict of `SweepResult`; `sweeps_from_json` reads it back.

    Args:
        sweeps: a dict from name (parameterization) to `SweepResult`, as
            `parameterization_sweep` returns.

    Returns:
        Standard JSON text (an object of `SweepResult` objects, in the dict's order).
    """
    return json.dumps({k: json.loads(v.to_json()) for k, v in sweeps.items()}, indent=1)


def sweeps_from_json(text: str) -> dict:
    """The dict of `SweepResult` that `sweeps_to_json` wrote.

    Args:
        text: the JSON text (e.g. the contents of ``parameterizations.json``).

    Returns:
        A dict from name to `SweepResult`, in the file's order.
    """
    return {k: SweepResult.from_json(json.dumps(v)) for k, v in json.loads(text).items()}
