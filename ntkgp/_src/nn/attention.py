"""Global self-attention with positional embeddings, and a transformer builder."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import attention as att
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.core import Layer, make_layer
from ntkgp._src.nn.layers import format_number


def _flat(a, lead: int, p: int):
    return None if a is None else a.reshape(a.shape[:lead] + (p, p))


def GlobalSelfAttention(n_chan_out: int, n_chan_key: int, n_chan_val: int, n_heads: int,
                        linear_scaling: bool = True, W_key_std: float = 1.0,
                        W_value_std: float = 1.0, W_query_std: float = 1.0,
                        W_out_std: float = 1.0, b_std: Optional[float] = None,
                        attention_mechanism: str = "SOFTMAX", pos_emb_type: str = "NONE",
                        pos_emb_p_norm: float = 2, pos_emb_decay_fn: Optional[Callable] = None,
                        n_chan_pos_emb: Optional[int] = None, W_pos_emb_std: float = 1.0,
                        val_pos_emb: bool = False) -> Layer:
    r"""Scaled dot-product self-attention over all positions of ``(N, *S, C)`` inputs
    (sequences ``(N, L, C)`` or images ``(N, H, W, C)``), ``n_heads`` heads, NTK
    parameterization (Hron et al. 2020).

    Each head computes keys :math:`k = \sigma_K x W_K/\sqrt{C}`, values :math:`v = x W_V`,
    logits :math:`\sigma_Q\sigma_K\, q_p\cdot k_q / (C\, n_\mathrm{key})` (``linear_scaling``:
    queries tied to keys, logits converge to :math:`\sigma_Q\sigma_K\, C(x)_{pq}`, the input
    covariance between positions) or :math:`/(C \sqrt{n_\mathrm{key}})` with independent queries,
    attention weights :math:`G = \mathrm{mech}(\text{logits})` (softmax over key positions),
    and the output is :math:`\sigma_O\sigma_V\,[G_1 v_1, \dots, G_H v_H]\, W_O /
    \sqrt{H n_\mathrm{val} C} + \sigma_b b`. The infinite-width kernel (widths and heads to
    infinity; ``linear_scaling=True``, or ``'IDENTITY'`` attention) is

    .. math::
        K' = \sigma_O^2\sigma_V^2\, G(x_1)\, K\, G(x_2)^\top + \sigma_b^2, \qquad
        \Theta' = \sigma_O^2\sigma_V^2\, G(x_1) (\Theta + 2K) G(x_2)^\top + \sigma_b^2,

    with :math:`G(x) = \mathrm{mech}(\sigma_Q\sigma_K\, C(x))`. Positional embeddings (random,
    trained) are added (``'SUM'``) or appended (``'CONCAT'``) to the inputs of the keys and
    queries (and values with ``val_pos_emb``); their covariance between positions is the
    identity, or ``pos_emb_decay_fn(sum_a |p_a - q_a| ** pos_emb_p_norm)``, scaled by
    ``W_pos_emb_std**2`` (and, for ``'CONCAT'``, inputs and embeddings weighted by their
    channel counts). Arguments and numbers are neural-tangents' ``stax.GlobalSelfAttention``.

    Args:
        n_chan_out: output channels.
        n_chan_key: channels of keys and queries.
        n_chan_val: channels of values per head.
        n_heads: number of heads.
        linear_scaling: tie queries to keys and scale logits by ``1/n_chan_key`` (the
            kernel's closed form); ``False``: independent queries, ``1/sqrt(n_chan_key)`` (a
            kernel only for ``'IDENTITY'``).
        W_key_std, W_query_std: enter the limit only through their product.
        W_value_std, W_out_std: enter the limit only through their product.
        b_std: bias standard deviation, ``None`` for no bias.
        attention_mechanism: ``'SOFTMAX'``, ``'IDENTITY'``, ``'ABS'`` or ``'RELU'``.
        pos_emb_type: ``'NONE'``, ``'SUM'`` or ``'CONCAT'``.
        pos_emb_p_norm: the power ``p`` of the distances given to ``pos_emb_decay_fn``.
        pos_emb_decay_fn: covariance of the embeddings as a function of distance; ``None``:
            independent embeddings per position.
        n_chan_pos_emb: channels of the embeddings (``None``: as the inputs; must equal them
            for ``'SUM'``).
        W_pos_emb_std: standard deviation of the embeddings.
        val_pos_emb: also give the embeddings to the values.

    Returns:
        A `Layer` mapping ``(N, *S, C)`` to ``(N, *S, n_chan_out)``. Parameters: ``'W_key'``
        ``(H, C', n_chan_key)``, ``'W_query'`` (without linear scaling), ``'W_value'``
        ``(H, C'', n_chan_val)``, ``'W_out'`` ``(H n_chan_val, n_chan_out)``, ``'b'``,
        ``'pos_emb'`` ``(1, *S, n_chan_pos_emb)``.

    Raises:
        ValueError: sizes below 1, an unknown mechanism or embedding type, embeddings whose
            channels do not match the inputs for ``'SUM'``, inputs without positions.
        NotImplementedError: the kernel without linear scaling for mechanisms other than
            ``'IDENTITY'`` (no closed form).

    References:
        Hron et al. 2020, "Infinite attention: NNGP and NTK for deep attention networks",
        https://arxiv.org/abs/2006.10540.
    """
    for v, nm in ((n_chan_out, "n_chan_out"), (n_chan_key, "n_chan_key"),
                  (n_chan_val, "n_chan_val"), (n_heads, "n_heads")):
        checks.check_int(v, nm, 1)
    for v, nm in ((W_key_std, "W_key_std"), (W_value_std, "W_value_std"),
                  (W_query_std, "W_query_std"), (W_out_std, "W_out_std"),
                  (W_pos_emb_std, "W_pos_emb_std")):
        checks.check_nonneg(v, nm)
    checks.check_nonneg(b_std, "b_std", allow_none=True)
    mech = checks.check_choice(attention_mechanism, "attention_mechanism", att.MECHANISMS)
    pe_type = checks.check_choice(pos_emb_type, "pos_emb_type", att.POS_EMB_TYPES)
    if n_chan_pos_emb is not None:
        checks.check_int(n_chan_pos_emb, "n_chan_pos_emb", 1)
    if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
        raise TypeError(f"`pos_emb_decay_fn` must be a function of distances or None; got "
                        f"{pos_emb_decay_fn!r}.")
    checks.check_scalar(pos_emb_p_norm, "pos_emb_p_norm", low=0.0, strict=True)
    qk, ov = W_query_std * W_key_std, W_out_std * W_value_std
    b2 = 0.0 if b_std is None else b_std ** 2
    name = (f"GlobalSelfAttention({n_chan_out}, key={n_chan_key}, val={n_chan_val}, "
            f"heads={n_heads}, {mech}, pos_emb={pe_type}, b_std="
            f"{'None' if b_std is None else format_number(b_std)})")

    def pe_channels(c_in):
        if pe_type == "NONE":
            return 0
        c = c_in if n_chan_pos_emb is None else n_chan_pos_emb
        if pe_type == "SUM" and c != c_in:
            raise ValueError(f"{name}: pos_emb_type='SUM' adds the embeddings to the inputs, "
                             f"so n_chan_pos_emb ({c}) must equal the input channels ({c_in}); "
                             "pass n_chan_pos_emb=None, or use pos_emb_type='CONCAT'.")
        return c

    def in_channels(c_in):
        """(channels seen by keys/queries, by values)."""
        c_pe = pe_channels(c_in)
        c_k = c_in + c_pe if pe_type == "CONCAT" else c_in
        return c_k, (c_k if val_pos_emb else c_in)

    def init(key, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{name} takes (N, *S, C) inputs with positions (e.g. (N, L, C) "
                             f"sequences); got shape {tuple(input_shape)}.")
        c_in = checks.check_feature_count(input_shape, "GlobalSelfAttention")
        c_k, c_v = in_channels(c_in)
        kq, kk, kv, ko, kb, kp = jax.random.split(key, 6)
        params = {"W_key": jax.random.normal(kk, (n_heads, c_k, n_chan_key)),
                  "W_value": jax.random.normal(kv, (n_heads, c_v, n_chan_val)),
                  "W_out": jax.random.normal(ko, (n_heads * n_chan_val, n_chan_out))}
        if not linear_scaling:
            params["W_query"] = jax.random.normal(kq, (n_heads, c_k, n_chan_key))
        if b_std is not None:
            params["b"] = jax.random.normal(kb, (n_chan_out,))
        if pe_type != "NONE":
            shape = (1,) + tuple(input_shape[1:-1]) + (pe_channels(c_in),)
            params["pos_emb"] = jax.random.normal(kp, shape)
        return tuple(input_shape[:-1]) + (n_chan_out,), params

    @functools.lru_cache(maxsize=4)
    def pos_emb_root(s):
        """A square root of the embeddings' covariance over positions ``s`` (computed once
        per shape, not on every call of ``apply``)."""
        w, u = np.linalg.eigh(att.pos_emb_covariance(s, pos_emb_p_norm, pos_emb_decay_fn))
        return u * np.sqrt(np.maximum(w, 0.0))

    def embeddings(params, x, mask):
        z = params["pos_emb"]
        s = x.shape[1:-1]
        if z.shape[1:-1] != s:
            raise ValueError(f"{name} was initialized for positions {z.shape[1:-1]} but got "
                             f"inputs of shape {tuple(x.shape)}; re-run `init` with the input "
                             "shape you apply it to (pad sequences to one length and mask).")
        if pos_emb_decay_fn is not None:
            root = jnp.asarray(pos_emb_root(s), x.dtype)
            z = (root @ z.reshape(root.shape[0], -1)).reshape(z.shape)
        z = W_pos_emb_std * jnp.broadcast_to(z, x.shape[:-1] + z.shape[-1:])
        if mask is not None:
            z = jnp.where(mask[..., None], jnp.zeros((), z.dtype), z)
        return z

    def apply(params, x, mask=None, **kwargs):
        if x.ndim < 3:
            raise ValueError(f"{name} takes (N, *S, C) inputs with positions; got shape "
                             f"{tuple(x.shape)}.")
        n, c_in, s = x.shape[0], x.shape[-1], x.shape[1:-1]
        if params["W_key"].shape[1] != in_channels(c_in)[0]:
            raise ValueError(f"{name} was initialized for other input channels than the "
                             f"{c_in} of inputs of shape {tuple(x.shape)}; re-run `init`.")
        xk = xv = x
        if pe_type != "NONE":
            z = embeddings(params, x, mask)
            xk = x + z if pe_type == "SUM" else jnp.concatenate([x, z], axis=-1)
            xv = xk if val_pos_emb else x
        p = int(np.prod(s))
        xk, xv = xk.reshape(n, p, -1), xv.reshape(n, p, -1)
        hi = jax.lax.Precision.HIGHEST
        keys = jnp.einsum("npc,hck->hnpk", xk, params["W_key"], precision=hi)
        queries = keys if linear_scaling else jnp.einsum(
            "npc,hck->hnpk", xk, params["W_query"], precision=hi)
        norm = xk.shape[-1] * (n_chan_key if linear_scaling else np.sqrt(n_chan_key))
        logits = jnp.einsum("hnpk,hnqk->hnpq", queries, keys, precision=hi) * (qk / norm)
        g = jax.vmap(lambda a: att.weights(a, None if mask is None else mask.reshape(n, p),
                                           1.0, mech))(logits)
        values = jnp.einsum("npc,hcv->hnpv", xv, params["W_value"], precision=hi)
        heads = jnp.einsum("hnpq,hnqv->npvh", g, values, precision=hi)
        heads = jnp.swapaxes(heads, -1, -2).reshape(n, p, n_heads * n_chan_val)
        out = (heads @ params["W_out"]) * (ov / np.sqrt(n_chan_val * n_heads * xv.shape[-1]))
        if b_std is not None:
            out = out + b_std * params["b"].reshape(1, 1, n_chan_out)
        return out.reshape((n,) + s + (n_chan_out,))

    def kernel_map(k: Kernel) -> Kernel:
        if k.spatial_ndim == 0:
            raise ValueError(f"{name} needs inputs with positions ((N, L, C) or "
                             "(N, H, W, C)); here its input is (N, d) features.")
        if not k.full_spatial:  # not reachable through the public kernel functions
            raise ValueError(f"{name} needs the covariance of every pair of positions.")
        if not linear_scaling and mech != "IDENTITY":
            raise NotImplementedError(
                f"{name}: without linear scaling the kernel has no closed form for "
                f"{mech!r} attention (only for 'IDENTITY'). Use linear_scaling=True.")
        s = k.spatial_shape
        p = int(np.prod(s))
        w_in, w_pe = 1.0, W_pos_emb_std ** 2
        if pe_type != "NONE":
            if k.width is None:
                raise ValueError(f"{name} with positional embeddings needs the channel count "
                                 "of its input, which the preceding layers do not fix.")
            c_pe = pe_channels(k.width)
            if pe_type == "CONCAT":
                w_in, w_pe = k.width / (k.width + c_pe), w_pe * c_pe / (k.width + c_pe)
        out = _kernel(k, p, w_in, w_pe, mech, qk, ov, b2, linear_scaling, pe_type,
                      pos_emb_p_norm, pos_emb_decay_fn, val_pos_emb)
        return out.replace(is_gaussian=True, width=n_chan_out)

    return make_layer(name, init, apply, kernel_map, structured=False,
                      diag_ok=lambda out_ok: False, spatial=True, remask=True)


def _kernel(k, p, w_in, w_pe, mech, qk, ov, b2, linear, pe_type, p_norm, decay_fn, val_pe):
    """The attention kernel map on flattened positions (see ``kernels.attention``)."""
    s = k.spatial_shape
    n1 = k.cov1.shape[0]
    cov1, cov2 = _flat(k.cov1, 1, p), _flat(k.cov2, 1, p)
    nngp, ntk = _flat(k.nngp, 2, p), _flat(k.ntk, 2, p)
    m1 = None if k.mask1 is None else k.mask1.reshape(n1, p)
    m2 = m1 if k.mask2 is None else k.mask2.reshape(k.mask2.shape[0], p)
    c1, c2, v12, t12 = cov1, cov2, nngp, ntk
    if pe_type != "NONE":
        r = jnp.asarray(att.pos_emb_covariance(s, p_norm, decay_fn), cov1.dtype)

        def interp(a, rr):
            return None if a is None else w_in * a + w_pe * rr

        def r_self(m):
            return r[None] if m is None else jnp.where(m[:, :, None] | m[:, None, :], 0.0,
                                                       r[None])

        c1 = interp(cov1, r_self(m1))
        c2 = None if cov2 is None else interp(cov2, r_self(m2))
        if val_pe or not linear:
            r12 = r[None, None] if m1 is None else jnp.where(
                m1[:, None, :, None] | m2[None, :, None, :], 0.0, r[None, None])
            v12, t12 = interp(nngp, r12), interp(ntk, r12)
    if linear:
        g1 = att.weights(c1, m1, qk, mech)
        g2 = g1 if cov2 is None else att.weights(c2, m2, qk, mech)
        vals = v12 if val_pe else nngp
        new_nngp = ov ** 2 * att.mix_pairs(vals, g1, g2)
        new_ntk = None
        if ntk is not None:
            tv = t12 if val_pe else ntk
            new_ntk = ov ** 2 * att.mix_pairs(tv, g1, g2) + 2.0 * new_nngp + b2
        new_cov1 = ov ** 2 * att.mix_self(c1 if val_pe else cov1, g1) + b2
        new_cov2 = None if cov2 is None else ov ** 2 * att.mix_self(
            c2 if val_pe else cov2, g2) + b2
        new_nngp = new_nngp + b2
    else:
        new_nngp, new_ntk, new_cov1, new_cov2 = _identity_sqrt_scaling(
            nngp, ntk, cov1, cov2, v12, t12, c1, c2, (qk * ov) ** 2, b2, val_pe,
            pe_type == "NONE")

    def unflat(a, lead):
        return None if a is None else a.reshape(a.shape[:lead] + s + s)

    return k.replace(nngp=unflat(new_nngp, 2), ntk=unflat(new_ntk, 2),
                     cov1=unflat(new_cov1, 1), cov2=unflat(new_cov2, 1))


def _identity_sqrt_scaling(nngp, ntk, cov1, cov2, v12, t12, c1, c2, w2, b2, val_pe, no_pe):
    """'IDENTITY' attention with logits scaled by ``1/sqrt(n_chan_key)``: the kernel is the
    covariance times its own inner product over pairs of positions (Hron et al. 2020)."""
    dot = att.identity_dot
    d12 = dot(v12, v12 if val_pe else nngp)
    new_nngp = w2 * d12 * v12 + b2
    new_cov1 = w2 * dot(c1, c1 if val_pe else cov1) * c1 + b2
    new_cov2 = None if cov2 is None else w2 * dot(c2, c2 if val_pe else cov2) * c2 + b2
    new_ntk = None
    if ntk is not None:
        nd = 2.0 * dot(v12, t12) if (val_pe or no_pe) else dot(v12, ntk) + dot(nngp, t12)
        new_ntk = w2 * (nd * v12 + d12 * (t12 + 4.0 * v12)) + b2
    return new_nngp, new_ntk, new_cov1, new_cov2


def transformer(depth: int = 2, width: int = 128, n_heads: int = 4, n_out: int = 1,
                attention_mechanism: str = "SOFTMAX", pos_emb_type: str = "SUM",
                mlp_width: Optional[int] = None, W_std: float = 1.0,
                b_std: Optional[float] = 0.0) -> Layer:
    r"""A post-LayerNorm transformer encoder for ``(N, L, C)`` sequences (or images): a Dense
    embedding, ``depth`` blocks of residual self-attention and residual ReLU MLP, each followed
    by `LayerNorm` over the channels, then global average pooling (over present positions with
    masks) and a Dense readout.

    Args:
        depth: number of blocks (``>= 1``).
        width: channels of the embedding, attention (keys, values per head, outputs).
        n_heads: attention heads.
        n_out: outputs of the readout.
        attention_mechanism: see `GlobalSelfAttention`.
        pos_emb_type: see `GlobalSelfAttention` (``'SUM'``: independent learned embeddings
            added to each attention layer's keys and queries).
        mlp_width: hidden width of each block's MLP (default ``width``).
        W_std, b_std: of the Dense layers (the attention layers use their defaults).

    Returns:
        A `Layer` mapping ``(N, L, C)`` to ``(N, n_out)``.
    """
    from ntkgp._src.nn.combinators import FanInSum, FanOut, parallel, serial
    from ntkgp._src.nn.layers import Dense, Identity, Relu
    from ntkgp._src.nn.norm import LayerNorm
    from ntkgp._src.nn.pooling import GlobalAvgPool

    depth = checks.check_int(depth, "depth", 1)
    hidden = width if mlp_width is None else checks.check_int(mlp_width, "mlp_width", 1)

    def residual(branch):
        return serial(FanOut(2), parallel(Identity(), branch), FanInSum(), LayerNorm(axis=-1))

    blocks = []
    for _ in range(depth):
        blocks.append(residual(GlobalSelfAttention(
            width, width, width, n_heads, attention_mechanism=attention_mechanism,
            pos_emb_type=pos_emb_type, b_std=b_std)))
        blocks.append(residual(serial(Dense(hidden, W_std, b_std), Relu(),
                                      Dense(width, W_std, b_std))))
    return serial(Dense(width, W_std, b_std), *blocks, GlobalAvgPool(),
                  Dense(n_out, W_std, b_std))
