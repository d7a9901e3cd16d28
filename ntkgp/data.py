"""Datasets bundled with installed packages, CSV files and fixed splits; ntkgp never downloads
data."""

from ntkgp._src.data import DATASETS as DATASETS
from ntkgp._src.data import IMAGE_SETS as IMAGE_SETS
from ntkgp._src.data import REGRESSION as REGRESSION
from ntkgp._src.data import keel as keel
from ntkgp._src.data import load as load
from ntkgp._src.data import load_csv as load_csv
from ntkgp._src.data import load_images as load_images
from ntkgp._src.data import mse_targets as mse_targets
from ntkgp._src.data import onehot_targets as onehot_targets
from ntkgp._src.data import rdataset as rdataset
from ntkgp._src.data import read_csv as read_csv
from ntkgp._src.data import read_idx as read_idx
from ntkgp._src.data import split as split
