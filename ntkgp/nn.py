"""Architectures: a stax-style language of layers with finite-width and infinite-width functions.

Every layer is a `Layer` with ``init``, ``apply`` and ``kernel`` (it unpacks as that triple)::

    from ntkgp import nn
    init, apply, kernel = nn.serial(nn.Dense(512, W_std=1.5, b_std=0.05), nn.Relu(), nn.Dense(1))
"""

from ntkgp._src.nn.activations import Cos as Cos
from ntkgp._src.nn.activations import Exp as Exp
from ntkgp._src.nn.activations import ExpNormalized as ExpNormalized
from ntkgp._src.nn.activations import Gabor as Gabor
from ntkgp._src.nn.activations import Gaussian as Gaussian
from ntkgp._src.nn.activations import Hermite as Hermite
from ntkgp._src.nn.activations import Monomial as Monomial
from ntkgp._src.nn.activations import Polynomial as Polynomial
from ntkgp._src.nn.activations import Rbf as Rbf
from ntkgp._src.nn.activations import RectifiedMonomial as RectifiedMonomial
from ntkgp._src.nn.activations import Sigmoid_like as Sigmoid_like
from ntkgp._src.nn.activations import Sign as Sign
from ntkgp._src.nn.attention import GlobalSelfAttention as GlobalSelfAttention
from ntkgp._src.nn.attention import transformer as transformer
from ntkgp._src.nn.combinators import FanInProd as FanInProd
from ntkgp._src.nn.combinators import FanInSum as FanInSum
from ntkgp._src.nn.combinators import FanOut as FanOut
from ntkgp._src.nn.combinators import parallel as parallel
from ntkgp._src.nn.combinators import repeat as repeat
from ntkgp._src.nn.combinators import serial as serial
from ntkgp._src.nn.concat import FanInConcat as FanInConcat
from ntkgp._src.nn.conv import Conv as Conv
from ntkgp._src.nn.conv import myrtle as myrtle
from ntkgp._src.nn.conv_variants import ConvLocal as ConvLocal
from ntkgp._src.nn.conv_variants import ConvTranspose as ConvTranspose
from ntkgp._src.nn.core import Layer as Layer
from ntkgp._src.nn.elementwise import Elementwise as Elementwise
from ntkgp._src.nn.elementwise import ElementwiseNumerical as ElementwiseNumerical
from ntkgp._src.nn.graph import Aggregate as Aggregate
from ntkgp._src.nn.layers import ABRelu as ABRelu
from ntkgp._src.nn.layers import Abs as Abs
from ntkgp._src.nn.layers import Dense as Dense
from ntkgp._src.nn.layers import Dropout as Dropout
from ntkgp._src.nn.layers import Erf as Erf
from ntkgp._src.nn.layers import Gelu as Gelu
from ntkgp._src.nn.layers import Identity as Identity
from ntkgp._src.nn.layers import LeakyRelu as LeakyRelu
from ntkgp._src.nn.layers import Relu as Relu
from ntkgp._src.nn.layers import Sin as Sin
from ntkgp._src.nn.norm import LayerNorm as LayerNorm
from ntkgp._src.nn.pooling import AvgPool as AvgPool
from ntkgp._src.nn.pooling import Flatten as Flatten
from ntkgp._src.nn.pooling import GlobalAvgPool as GlobalAvgPool
from ntkgp._src.nn.pooling import GlobalSumPool as GlobalSumPool
from ntkgp._src.nn.pooling import SumPool as SumPool
from ntkgp._src.nn.reshape import DotGeneral as DotGeneral
from ntkgp._src.nn.reshape import ImageResize as ImageResize
from ntkgp._src.nn.reshape import Index as Index
from ntkgp._src.nn.reshape import Slice as Slice
from ntkgp._src.nn.spec import cnn as cnn
from ntkgp._src.nn.spec import from_spec as from_spec
from ntkgp._src.nn.spec import mlp as mlp
from ntkgp._src.nn.spec import parse_spec as parse_spec
