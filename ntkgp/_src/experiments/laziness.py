r"""The laziness scale: one width, the model :math:`\alpha\,(f(x,\theta) - f(x,\theta_0))`.

Chizat, Oyallon & Bach (2019) showed that the kernel regime is a matter of scale, not only of
width: training :math:`\alpha\,(f - f_0)` on the loss divided by :math:`\alpha^2` leaves the
tangent-space dynamics unchanged, but the parameters move by :math:`O(1/\alpha)`, so a large
:math:`\alpha` is lazy (the network stays its linearization) and a small one is not.
`laziness_sweep` runs `width_sweep` at one width for several :math:`\alpha`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence

from ntkgp._src.experiments.compare import DISTANCES, WidthResult, width_sweep
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
