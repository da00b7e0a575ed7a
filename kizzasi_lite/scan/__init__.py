"""Linear recurrences ``h_t = a_t * h_{t-1} + b_t`` over the time axis (axis 1).

Shapes: ``a`` and ``b`` are ``(B, T, *S)`` (``a`` may broadcast against ``b``), ``h0`` is ``(B, *S)``.
Every kernel returns ``(hs, h_last)`` with ``hs[:, t] = h_t`` of shape ``(B, T, *S)`` and
``h_last = h_{T-1}`` of shape ``(B, *S)`` (``h0`` itself when ``T == 0``).

- :func:`scan_sequential`: the definition, one step at a time (reference; O(T) Python steps).
- :func:`scan_chunked`: Hillis-Steele doubling inside chunks of ``chunk`` steps (all chunks at
  once, ``log2(chunk)`` array ops), then one multiply-add per chunk to carry the state across.
  Work ``O(T log chunk)``, Python-level ops ``O(T / chunk + log chunk)``.
- :func:`scan_parallel`: Hillis-Steele doubling over the whole sequence, ``O(log T)`` depth.

All three only multiply and add (no logs, no division), so any ``a`` works, decays near 0 and
near 1 included, and no array is mutated in place.
"""

from __future__ import annotations

from typing import Any

from kizzasi_lite.backends import namespace
from kizzasi_lite.errors import ConfigError


def _broadcast_a(xp: Any, a: Any, b: Any) -> Any:
    return a if tuple(a.shape) == tuple(b.shape) else xp.broadcast_to(a, tuple(b.shape))


def scan_sequential(a: Any, b: Any, h0: Any) -> tuple[Any, Any]:
    """Reference scan: ``h_t = a_t * h_{t-1} + b_t``, step by step. Shapes as in the module doc."""
    xp = namespace(a, b, h0)
    if a.shape[1] != b.shape[1]:  # a broadcast time axis; other axes broadcast in the product
        a = xp.broadcast_to(a, (a.shape[0], b.shape[1], *a.shape[2:]))
    h, hs = h0, []
    for t in range(b.shape[1]):
        h = a[:, t, ...] * h + b[:, t, ...]  # (B, *S)
        hs.append(h)
    if not hs:
        return b, h0
    return xp.stack(hs, axis=1), h  # (B, T, *S), (B, *S)


def _shift(xp: Any, x: Any, k: int, fill: float, axis: int) -> Any:
    """``x`` moved ``k`` steps later along ``axis``, the first ``k`` entries set to ``fill``."""
    n = x.shape[axis]
    if k >= n:
        return xp.full(x.shape, fill, dtype=x.dtype)
    pad_shape = list(x.shape)
    pad_shape[axis] = k
    pad = xp.full(tuple(pad_shape), fill, dtype=x.dtype)
    keep = [slice(None)] * x.ndim
    keep[axis] = slice(0, n - k)
    return xp.concat([pad, x[tuple(keep)]], axis=axis)


def _doubling(xp: Any, a: Any, b: Any, axis: int) -> tuple[Any, Any]:
    """Inclusive scan of the pairs (a, b) along ``axis`` by Hillis-Steele doubling.

    Returns ``(A, Hb)``: ``A_t = a_0 * ... * a_t`` and ``Hb_t`` = the state at t from a zero start.
    The combine rule (a1, b1) then (a2, b2) = (a1 * a2, a2 * b1 + b2) is associative.
    """
    n, k = a.shape[axis], 1
    while k < n:
        a_prev = _shift(xp, a, k, 1.0, axis)
        b_prev = _shift(xp, b, k, 0.0, axis)
        b = a * b_prev + b
        a = a * a_prev
        k *= 2
    return a, b


def scan_parallel(a: Any, b: Any, h0: Any) -> tuple[Any, Any]:
    """``O(log T)``-depth scan (Hillis-Steele) of ``h_t = a_t * h_{t-1} + b_t``."""
    xp = namespace(a, b, h0)
    if b.shape[1] == 0:
        return b, h0
    a = _broadcast_a(xp, a, b)
    cum_a, hb = _doubling(xp, a, b, axis=1)  # (B, T, *S) each
    hs = cum_a * xp.expand_dims(h0, axis=1) + hb  # (B, T, *S)
    return hs, hs[:, -1, ...]


def scan_chunked(a: Any, b: Any, h0: Any, chunk: int = 64) -> tuple[Any, Any]:
    """Chunked scan of ``h_t = a_t * h_{t-1} + b_t``: doubling inside chunks, a carry across them."""
    xp = namespace(a, b, h0)
    if chunk < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    B, T = b.shape[0], b.shape[1]
    rest = tuple(b.shape[2:])
    if T == 0:
        return b, h0
    a = _broadcast_a(xp, a, b)
    n_chunks = -(-T // chunk)
    pad = n_chunks * chunk - T
    if pad:  # identity steps: a = 1, b = 0 leave the state unchanged
        a = xp.concat([a, xp.ones((B, pad, *rest), dtype=a.dtype)], axis=1)
        b = xp.concat([b, xp.zeros((B, pad, *rest), dtype=b.dtype)], axis=1)
    a = xp.reshape(a, (B, n_chunks, chunk, *rest))  # (B, NC, C, *S)
    b = xp.reshape(b, (B, n_chunks, chunk, *rest))  # (B, NC, C, *S)
    cum_a, hb = _doubling(xp, a, b, axis=2)  # (B, NC, C, *S) each
    # carry the state into each chunk: h_in[c] = cum_a[c, -1] * h_in[c-1] + hb[c, -1]
    h, h_in = h0, []
    for c in range(n_chunks):
        h_in.append(h)
        h = cum_a[:, c, -1, ...] * h + hb[:, c, -1, ...]  # (B, *S)
    h_in = xp.stack(h_in, axis=1)  # (B, NC, *S)
    hs = cum_a * xp.expand_dims(h_in, axis=2) + hb  # (B, NC, C, *S)
    hs = xp.reshape(hs, (B, n_chunks * chunk, *rest))[:, :T, ...]  # (B, T, *S)
    return hs, hs[:, -1, ...]


__all__ = ["scan_chunked", "scan_parallel", "scan_sequential"]
