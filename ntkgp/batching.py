"""Tiled kernel computation with bounded memory, any N, and a progress bar; tiles can be kept
in a checked, resumable store on disk (`StoreError` when one cannot be used). Large buffers
can be kept by the process for reuse (`reuse_large_buffers`)."""

from ntkgp._src.scale.batching import auto_tile_size as auto_tile_size
from ntkgp._src.scale.batching import batch as batch
from ntkgp._src.scale.buffers import reuse_large_buffers as reuse_large_buffers
from ntkgp._src.scale.store import StoreError as StoreError
