"""Random features of the infinite-width kernels: ``phi(x1) @ phi(x2).T`` approximates
``net.kernel(x1, x2, get)`` with an error shrinking like ``1/sqrt(n_features)``, so kernel
regression on millions of rows costs time linear in the rows::

    from ntkgp import features, nn
    net = nn.mlp(2, 512, "relu")
    phi = features.FeatureMap(net, n_features=2048, key=0)   # get='ntk'
    k_approx = phi(x1) @ phi(x2).T

`NystromMap` gives features of the exact kernel on landmark rows instead (any architecture;
data-adaptive). Regression and posteriors on either: ``predict.Posterior(net, x, y,
solver='features')`` or ``solver='nystrom'`` (`ntkgp.linalg.FeatureSolver`), the estimators'
``solver=`` and ``ntkgp fit --solver``. Rows that do not fit in memory (a Dask, zarr or h5py
array, a NumPy memmap; `LazyRows` for any other) are read a span at a time.
"""

from ntkgp._src.features.feature_map import BaseFeatureMap as BaseFeatureMap
from ntkgp._src.features.feature_map import FeatureMap as FeatureMap
from ntkgp._src.features.nystrom import NystromMap as NystromMap
from ntkgp._src.features.rows import LazyRows as LazyRows
from ntkgp._src.features.rules import Feats as Feats
from ntkgp._src.features.rules import orthogonal_normal as orthogonal_normal
