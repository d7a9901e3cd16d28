"""Tiled kernel computation with bounded memory, any N, and a progress bar."""

from ntkgp._src.batching import auto_tile_size as auto_tile_size
from ntkgp._src.batching import batch as batch
