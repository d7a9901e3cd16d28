"""What the two kernel stores on disk share (the tile store of ``batching.batch(store=)`` and
the zarr store of ``ntkgp.distributed``): one error type, the identity of a computation, a
manifest that binds a store to it, checksums that bind each tile to its place and content,
and the clean-up of temporary files a killed run left behind."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import types
from typing import Optional

import numpy as np

from ntkgp._src.util import write_atomic

_LIBRARIES = ("jax", "jaxlib", "numpy", "scipy", "builtins", "math")


class StoreError(OSError, ValueError):
    """A kernel store on disk that cannot be used as it is (damaged, changed after it was
    written, of another computation, or not a store); the message names the path and what
    to do. Both an ``OSError`` and a ``ValueError``."""


def _code(code: types.CodeType, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code(c, h)
        else:
            h.update(repr(c).encode())


def _describe(obj, h, seen: set) -> bool:
    """Feed ``obj``'s identity into ``h``; ``False`` when it cannot be identified."""
    if isinstance(obj, (type(None), bool, int, float, complex, str, bytes)):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return True
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not callable(obj):
        a = np.ascontiguousarray(np.asarray(obj))
        if a.dtype == object:
            return False
        h.update(f"array{a.shape}{a.dtype.str};".encode())
        h.update(a.reshape(-1).view(np.uint8))
        return True
    if isinstance(obj, (tuple, list, frozenset)):
        h.update(f"{type(obj).__name__}{len(obj)}(".encode())
        items = sorted(obj, key=repr) if isinstance(obj, frozenset) else obj
        return all(_describe(v, h, seen) for v in items)
    if isinstance(obj, dict):
        h.update(f"dict{len(obj)}(".encode())
        return all(_describe(k, h, seen) and _describe(obj[k], h, seen)
                   for k in sorted(obj, key=repr))
    if isinstance(obj, (types.ModuleType, type)):
        h.update(f"{getattr(obj, '__module__', '')}.{obj.__name__};".encode())
        return True
    if id(obj) in seen:  # a cycle (a recursive function): already described
        h.update(b"seen;")
        return True
    seen.add(id(obj))
    if isinstance(obj, functools.partial):
        return (_describe(obj.func, h, seen) and _describe(obj.args, h, seen)
                and _describe(obj.keywords, h, seen))
    if isinstance(obj, types.MethodType):
        return _describe(obj.__func__, h, seen) and _describe(obj.__self__, h, seen)
    if isinstance(obj, types.FunctionType):
        return _function(obj, h, seen)
    if hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps
        h.update(b"wrapped:")
        return _describe(obj.__wrapped__, h, seen)
    module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, types.BuiltinFunctionType) or (
            callable(obj) and module.split(".")[0] in _LIBRARIES and hasattr(obj, "__name__")):
        h.update(f"{module}.{getattr(obj, '__qualname__', obj.__name__)};".encode())
        return True
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields is not None:  # a frozen description (e.g. an ntkgp.nn Layer)
        h.update(f"{type(obj).__module__}.{type(obj).__qualname__}(".encode())
        return all(_describe(getattr(obj, f), h, seen) for f in fields)
    return False


def _function(fn: types.FunctionType, h, seen: set) -> bool:
    h.update(f"fn {fn.__module__}.{fn.__qualname__};".encode())
    _code(fn.__code__, h)
    if not (_describe(fn.__defaults__, h, seen) and _describe(fn.__kwdefaults__, h, seen)):
        return False
    for cell in fn.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            value = None
        if not _describe(value, h, seen):
            return False
    if (fn.__module__ or "").split(".")[0] in _LIBRARIES + ("ntkgp",):
        return True  # library code: its globals are the library's own
    for name in fn.__code__.co_names:  # the module-level values the function reads
        if name in fn.__globals__:
            h.update(f"global {name}=".encode())
            if not _describe(fn.__globals__[name], h, seen):
                return False
    return True


def identify(fn) -> Optional[str]:
    """A SHA-256 of what ``fn`` computes: its code and the values it closes over or reads
    from its module (numbers, strings, arrays, functions, ntkgp networks), recursively; or
    ``None`` when some part of it cannot be identified (an arbitrary object)."""
    h = hashlib.sha256()
    return h.hexdigest() if _describe(fn, h, set()) else None


def fingerprint(kernel_fn, key: Optional[str], *parts) -> str:
    """The identity of a stored computation: ``kernel_fn`` (or the caller's ``key`` for it)
    and every array, argument and size in ``parts``.

    Raises:
        ValueError: ``kernel_fn`` cannot be identified and no ``key`` was given.
    """
    h = hashlib.sha256()
    if key is not None:
        h.update(f"key:{key};".encode())
    else:
        ident = identify(kernel_fn)
        if ident is None:
            raise ValueError(
                f"cannot tell what the kernel function {kernel_fn!r} computes (it uses "
                "objects ntkgp cannot identify), so tiles stored for it could be reused for "
                "another function. Pass `store_key=` (a string naming this exact kernel and "
                "its settings), or use an ntkgp.nn network's kernel.")
        h.update(ident.encode())
    if not _describe(parts, h, set()):
        raise ValueError("cannot fingerprint the arguments of the stored computation; pass "
                         "arrays, numbers and strings only.")
    return h.hexdigest()


def digest(fingerprint_: str, place: str, arrays: dict) -> str:
    """SHA-256 binding ``arrays`` (name -> array) to a store's computation and a place in it:
    a tile copied to another place, or from another store, no longer matches."""
    h = hashlib.sha256(f"{fingerprint_}:{place}".encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.shape}{a.dtype.str}".encode())
        h.update(a.reshape(-1).view(np.uint8))  # the buffer itself, no copy
    return h.hexdigest()


def open_store_dir(path: str, fingerprint_: str, fmt: str, info: dict, has_data) -> None:
    """Create ``path`` with a manifest for this computation, or check that it holds one.

    ``has_data(path)`` says whether the folder already holds stored data (a store whose
    manifest is missing is refused rather than adopted).

    Raises:
        StoreError: ``path`` is a file, its manifest is unreadable or of another computation,
            or it holds data but no manifest.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"the store {path!r} is a file, not a folder; pass a folder path "
                         "(it is created if missing).")
    os.makedirs(path, exist_ok=True)
    clean_partial(path)
    manifest = os.path.join(path, "manifest.json")
    if not os.path.exists(manifest):
        if has_data(path):
            raise StoreError(f"the store {path!r} holds tiles but no manifest.json, so what "
                             "they belong to is unknown; delete the folder to start afresh or "
                             "use a new one.")
        text = json.dumps(dict(info, format=fmt, fingerprint=fingerprint_)).encode()
        write_atomic(manifest, lambda fh: fh.write(text))
        return
    if read_manifest(path, fmt)["fingerprint"] != fingerprint_:
        raise StoreError(f"the store {path!r} holds tiles of a different computation (other "
                         "inputs, arguments, tile size, `get` or kernel function). Use a new "
                         "folder, or delete this one to start afresh.")


def read_manifest(path: str, fmt: str) -> dict:
    """The manifest of the store at ``path``, checked to be of format ``fmt``.

    Raises:
        FileNotFoundError: ``path`` has no manifest (it is no store).
        StoreError: the manifest is damaged or of another format.
    """
    manifest = os.path.join(path, "manifest.json")
    if not os.path.exists(manifest):
        raise FileNotFoundError(f"{path!r} is not an ntkgp kernel store (no manifest.json).")
    try:
        with open(manifest, "rb") as fh:
            info = json.loads(fh.read().decode())
        if not isinstance(info, dict) or not isinstance(info.get("fingerprint"), str):
            raise ValueError("not a JSON object with a fingerprint")
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise StoreError(f"the manifest {manifest!r} is damaged ({e}); delete the store "
                         f"{path!r} to start afresh.") from None
    if info.get("format") != fmt:
        raise StoreError(f"the store {path!r} is of format {info.get('format')!r}, not "
                         f"{fmt!r} (written by another version of ntkgp); delete it to "
                         "compute its tiles again, or use a new folder.")
    return info


def clean_partial(path: str) -> None:
    """Remove the temporary files (``.tmp-*.part``) that a killed writer left in ``path``
    and its ``done/`` folder."""
    for folder in (path, os.path.join(path, "done")):
        if not os.path.isdir(folder):
            continue
        for f in os.listdir(folder):
            if f.startswith(".tmp-") and f.endswith(".part"):
                try:
                    os.unlink(os.path.join(folder, f))
                except FileNotFoundError:  # another process cleaned it
                    pass
