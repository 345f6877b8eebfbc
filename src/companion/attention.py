"""Attention from scratch: the reference every faster kernel in the book is checked against.

    scores  = q @ kᵀ · scale                       (B, H, T_q, T_k), scale = 1/√d by default
    scores += bias (ALiBi) ; masked scores = -inf  (causal, sliding window, padding, custom)
    weights = softmax(scores) over keys            rows of a fully masked query are all 0
    out     = weights @ v                          (B, H, T_q, d)

Grouped-query attention (GQA) lets several query heads share one key/value head: with H query
heads and H_kv key/value heads, query head h reads key/value head h // (H / H_kv). H_kv = H is
classic multi-head attention, H_kv = 1 is multi-query attention (MQA). Only the key/value heads
are cached at inference, so GQA divides the KV cache by H / H_kv.

Positions enter either by rotating q and k (RoPE: the score of q at position m and k at n then
depends on m − n only) or by a per-head linear penalty on distance (ALiBi).

    >>> q = k = v = torch.randn(1, 2, 5, 8)                       # (B, H, T, d)
    >>> out, weights = scaled_dot_product_attention(q, k, v, causal=True)
    >>> out.shape, weights.shape
    (torch.Size([1, 2, 5, 8]), torch.Size([1, 2, 5, 5]))

References:
- Vaswani et al., "Attention Is All You Need" (2017): scaled dot-product and multi-head attention.
- Shazeer, "Fast Transformer Decoding: One Write-Head is All You Need" (2019): MQA.
- Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models" (2023).
- Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding" (2021): RoPE.
- Chen et al., "Extending Context Window of LLMs via Positional Interpolation" (2023); the "NTK-aware"
  RoPE base scaling (bloc97, 2023) for longer contexts.
- Press et al., "Train Short, Test Long: Attention with Linear Biases" (2022): ALiBi.
- Beltagy et al., "Longformer" (2020): sliding-window attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def attention_mask(
    t_q: int,
    t_k: int,
    causal: bool = False,
    window: int | None = None,
    key_padding: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Boolean mask, True where a query may attend to a key: (T_q, T_k), or (B, 1, T_q, T_k) with padding.

    Queries are the *last* T_q positions of the T_k keys (as when decoding with a KV cache): query i
    sits at position i + T_k − T_q. ``causal`` keeps keys at or before the query's position;
    ``window`` = w keeps only the w most recent of those (the query itself included);
    ``key_padding`` (B, T_k) bool, True for padding, drops those keys for every query.

        >>> attention_mask(3, 3, causal=True).int().tolist()
        [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    if t_q < 1 or t_k < t_q:
        raise ValueError(f"need 1 <= t_q <= t_k (queries are the last t_q keys), got t_q={t_q}, t_k={t_k}")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be an int >= 1 or None, got {window!r}")
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]  # (T_q, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, T_k)
    keep = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if causal:
        keep &= k_pos <= q_pos
    if window is not None:
        keep &= k_pos > q_pos - window
        if not causal:
            keep &= k_pos < q_pos + window  # a symmetric window when the model may look ahead
    if key_padding is not None:
        if key_padding.dtype != torch.bool or key_padding.dim() != 2 or key_padding.shape[1] != t_k:
            raise ValueError(
                f"key_padding must be a bool tensor (B, T_k={t_k}), True at padding; got "
                f"{key_padding.dtype} {tuple(key_padding.shape)}"
            )
        keep = keep[None, None] & ~key_padding[:, None, None, :]  # (B, 1, T_q, T_k)
    return keep


# ---------------------------------------------------------------------------------------------
# Scaled dot-product attention
# ---------------------------------------------------------------------------------------------


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    window: int | None = None,
    key_padding: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (B, H, T_q, d) over k, v (B, H_kv, T_k, d); returns (out (B, H, T_q, d), weights (B, H, T_q, T_k)).

    H must be a multiple of H_kv (GQA). ``mask`` is a bool tensor broadcastable to
    (B, H, T_q, T_k), True where attention is allowed (torch's convention); it is combined with the
    ``causal``/``window``/``key_padding`` masks of ``attention_mask``. ``bias`` is added to the
    scores (e.g. ``alibi_bias``). ``scale`` defaults to 1/√d. A query with no allowed key gets zero
    weights and a zero output, as ``torch.nn.functional.scaled_dot_product_attention`` does.
    """
    _check_qkv(q, k, v)
    b, h, t_q, d = q.shape
    h_kv, t_k = k.shape[1], k.shape[2]
    if h_kv != h:  # GQA: each key/value head serves h // h_kv consecutive query heads
        k = k.repeat_interleave(h // h_kv, dim=1)
        v = v.repeat_interleave(h // h_kv, dim=1)
    if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 or None (1/sqrt(d)), got {scale!r}")
    scale = 1 / math.sqrt(d) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T_q, T_k)
    if bias is not None:
        try:
            scores = scores + bias
        except RuntimeError:
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not broadcast to (B, H, T_q, T_k) = "
                             f"{(b, h, t_q, t_k)}") from None
    keep = _combined_mask(mask, causal, window, key_padding, t_q, t_k, q.device)
    if keep is not None:
        if keep.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = may attend), got {keep.dtype}")
        try:
            keep = keep.expand(b, h, t_q, t_k)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(keep.shape)} does not broadcast to (B, H, T_q, T_k) = "
                             f"{(b, h, t_q, t_k)}") from None
        scores = scores.masked_fill(~keep, float("-inf"))
    acc = torch.promote_types(scores.dtype, torch.float32)  # fp16/bf16 scores: softmax in fp32
    weights = torch.softmax(scores.to(acc), dim=-1).to(q.dtype)
    if keep is not None:
        weights = weights.masked_fill(~keep.any(-1, keepdim=True), 0.0)  # fully masked rows: 0, not NaN
    return weights @ v, weights


def _combined_mask(mask, causal, window, key_padding, t_q, t_k, device) -> torch.Tensor | None:
    built = None
    if causal or window is not None or key_padding is not None:
        built = attention_mask(t_q, t_k, causal, window, key_padding, device)
    if mask is None:
        return built
    return mask if built is None else mask & built


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor (B, heads, T, d), got {getattr(t, 'shape', type(t))}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q has shape {tuple(q.shape)} but k has {tuple(k.shape)}; q, k must share the batch size and "
            "the last (head) dimension"
        )
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"q has {q.shape[1]} heads and k has {k.shape[1]}; the query heads must be a multiple "
                         "of the key/value heads (GQA)")


# ---------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE) and ALiBi
# ---------------------------------------------------------------------------------------------


def rope_cache(
    head_dim: int,
    max_positions: int,
    base: float = 10_000.0,
    interpolation: float = 1.0,
    ntk_factor: float = 1.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (max_positions, head_dim / 2) for ``apply_rope``.

    Pair i of a head rotates by angle pos · base^(−2i/d). To run a model beyond the context it was
    trained on: ``interpolation`` = s divides positions by s (position interpolation: all angles
    shrink, no angle is new); ``ntk_factor`` = s raises the base to base · s^(d/(d−2)) instead, so
    the fast pairs barely change and the slow ones stretch.
    """
    if head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be even and >= 2 for RoPE, got {head_dim}")
    if max_positions < 1:
        raise ValueError(f"max_positions must be >= 1, got {max_positions}")
    if not (interpolation >= 1 and ntk_factor >= 1):
        raise ValueError(f"interpolation and ntk_factor must be >= 1, got {interpolation} and {ntk_factor}")
    base = base * ntk_factor ** (head_dim / (head_dim - 2))
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim)  # (d/2,)
    positions = torch.arange(max_positions, device=device, dtype=torch.float64) / interpolation
    angles = torch.outer(positions, inv_freq)  # (T, d/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, offset: int | torch.Tensor = 0) -> torch.Tensor:
    """Rotate x (B, H, T, d) at positions offset .. offset+T−1, pairing dimension i with i + d/2.

    ``offset`` may instead be a long tensor (T,) of explicit positions, one per token (a batch of
    different sequences flattened into one, as a serving engine runs them).
    This is the "rotate half" layout of GPT-NeoX and Llama (the original RoFormer interleaves pairs;
    the two differ by a fixed permutation of the head dimensions).
    """
    if x.dim() != 4 or x.shape[-1] != 2 * cos.shape[-1]:
        raise ValueError(f"x must be (B, H, T, d) with d = 2 * {cos.shape[-1]} to match the cache, got {tuple(x.shape)}")
    t = x.shape[2]
    if isinstance(offset, torch.Tensor):
        if offset.shape != (t,) or offset.dtype != torch.long:
            raise ValueError(f"positions must be a long tensor (T={t},), got {offset.dtype} {tuple(offset.shape)}")
        positions = offset
    else:
        positions = torch.arange(offset, offset + t, device=x.device)
    if t and int(positions.max()) >= cos.shape[0]:
        raise ValueError(f"positions up to {int(positions.max())} requested but the RoPE cache holds {cos.shape[0]}")
    cos, sin = cos[positions].to(x.dtype), sin[positions].to(x.dtype)  # (T, d/2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes: for 8 heads 1/2, 1/4, ..., 1/256 (a geometric sequence).

    For a head count that is not a power of two, the slopes of the next lower power of two are
    followed by every other slope of the next higher one, as in Press et al.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")

    def powers_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = powers_of_two(closest)
    if closest < n_heads:
        slopes += powers_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes)


def alibi_bias(n_heads: int, t_q: int, t_k: int) -> torch.Tensor:
    """(H, T_q, T_k) bias −slope_h · (distance from query to key), queries being the last t_q keys."""
    if t_q < 1 or t_k < t_q:
        raise ValueError(f"need 1 <= t_q <= t_k (queries are the last t_q keys), got t_q={t_q}, t_k={t_k}")
    q_pos = torch.arange(t_k - t_q, t_k)[:, None]
    k_pos = torch.arange(t_k)[None, :]
    distance = (q_pos - k_pos).abs().float()
    return -alibi_slopes(n_heads)[:, None, None] * distance


# ---------------------------------------------------------------------------------------------
# Multi-head attention with GQA/MQA, RoPE or ALiBi
# ---------------------------------------------------------------------------------------------


@dataclass
class AttentionConfig:
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: = n_heads (MHA); 1: MQA; in between: GQA
    positions: str = "none"  # "none" (positions added to the input elsewhere), "rope" or "alibi"
    max_positions: int = 1024
    rope_base: float = 10_000.0
    bias: bool = True  # biases on the projections (GPT-2 has them, Llama does not)

    def __post_init__(self) -> None:
        self.n_kv_heads = self.n_kv_heads or self.n_heads
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.positions not in ("none", "rope", "alibi"):
            raise ValueError(f"positions must be 'none', 'rope' or 'alibi', got {self.positions!r}")


class MultiHeadAttention(nn.Module):
    """Self-attention (B, T, d_model) -> (B, T, d_model), optionally returning the weights (B, H, T, T)."""

    def __init__(self, cfg: AttentionConfig):
        super().__init__()
        self.cfg = cfg
        self.head_dim = cfg.d_model // cfg.n_heads
        kv_dim = cfg.n_kv_heads * self.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, kv_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, kv_dim, bias=cfg.bias)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        if cfg.positions == "rope":
            cos, sin = rope_cache(self.head_dim, cfg.max_positions, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def forward(
        self, x: torch.Tensor, causal: bool = True, key_padding: torch.Tensor | None = None, window: int | None = None,
        need_weights: bool = True, cache=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model) -> (out (B, T, d_model), weights (B, H, T, T_k) or None).

        With ``need_weights=False`` and no padding, window or ALiBi, the product runs in PyTorch's
        fused ``F.scaled_dot_product_attention``, which never materializes the (T, T) weights; the
        tests check it against the reference path. ``cache`` (a ``kvcache.LayerView``): the T new
        tokens sit after the cached ones, their keys and values are stored, and the queries attend
        to all T_k = cached + T keys.
        """
        if x.dim() != 3 or x.shape[-1] != self.cfg.d_model:
            raise ValueError(f"x must be (B, T, d_model={self.cfg.d_model}), got {tuple(x.shape)}")
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.cfg.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(b, t, self.cfg.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, H_kv, T, hd)
        v = self.v_proj(x).view(b, t, self.cfg.n_kv_heads, self.head_dim).transpose(1, 2)
        offset = 0 if cache is None else cache.offset
        if self.cfg.positions == "rope":
            q = apply_rope(q, self.rope_cos, self.rope_sin, offset)
            k = apply_rope(k, self.rope_cos, self.rope_sin, offset)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, H_kv, offset + T, hd)
        t_k = k.shape[2]
        bias = alibi_bias(self.cfg.n_heads, t, t_k).to(x.device, x.dtype) if self.cfg.positions == "alibi" else None
        if t_k != t and causal and not need_weights and bias is None and key_padding is None and window is None:
            # Fused kernel with cached keys: its is_causal aligns queries to the first keys, ours to the last.
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(t, t_k, causal=True, device=x.device),
                                                 enable_gqa=self.cfg.n_kv_heads != self.cfg.n_heads)
        elif need_weights or bias is not None or key_padding is not None or window is not None:
            out, weights = scaled_dot_product_attention(q, k, v, causal=causal, key_padding=key_padding,
                                                        window=window, bias=bias)
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                 enable_gqa=self.cfg.n_kv_heads != self.cfg.n_heads)
        out = out.transpose(1, 2).reshape(b, t, self.cfg.d_model)  # (B, T, d_model)
        return self.out_proj(out), weights

    def kv_cache_bytes_per_token(self, dtype: torch.dtype = torch.float16) -> int:
        """Bytes of K and V this layer caches per token: 2 · H_kv · head_dim · element size."""
        return 2 * self.cfg.n_kv_heads * self.head_dim * torch.empty((), dtype=dtype).element_size()


def load_torch_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy the weights of a ``torch.nn.MultiheadAttention`` (batch_first, with biases) into ours."""
    if ours.cfg.n_kv_heads != ours.cfg.n_heads or theirs.embed_dim != ours.cfg.d_model:
        raise ValueError("only plain multi-head attention of the same width maps onto nn.MultiheadAttention")
    w_q, w_k, w_v = theirs.in_proj_weight.detach().chunk(3)
    b_q, b_k, b_v = theirs.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for proj, w, b in ((ours.q_proj, w_q, b_q), (ours.k_proj, w_k, b_k), (ours.v_proj, w_v, b_v)):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)


# ---------------------------------------------------------------------------------------------
# Reading a trained model's attention maps
# ---------------------------------------------------------------------------------------------


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each query's attention row, averaged over queries: (..., T_q, T_k) -> (...).

    0 when every query puts all its weight on one key; log n when a query spreads evenly over n keys.

        >>> attention_entropy(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))   # (0 + log 2) / 2
        tensor(0.3466)
    """
    _check_weights(weights)
    plogp = torch.where(weights > 0, weights * weights.clamp_min(1e-30).log(), torch.zeros_like(weights))
    return -plogp.sum(-1).mean(-1)


def offset_score(weights: torch.Tensor, offset: int = 1) -> torch.Tensor:
    """Mean weight a query puts on the key ``offset`` positions before it: (..., T_q, T_k) -> (...).

    ``offset=1`` is the previous-token score, ``offset=0`` the weight on the query's own position.
    Queries are the last T_q of the T_k keys (as in ``attention_mask``); the first ``offset``
    positions have no such key and are left out of the mean.

        >>> offset_score(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]))  # (1 + 0.5) / 2
        tensor(0.7500)
    """
    _check_weights(weights)
    t_q, t_k = weights.shape[-2:]
    if t_q > t_k:
        raise ValueError(f"weights need T_q <= T_k (queries are the last T_q keys), got T_q={t_q}, T_k={t_k}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < t_k:
        raise ValueError(f"offset must be an int in [0, T_k={t_k}), got {offset!r}")
    picked = weights.diagonal(offset=t_k - t_q - offset, dim1=-2, dim2=-1)  # key = query position − offset
    if picked.shape[-1] == 0:
        raise ValueError(f"no query among the last {t_q} of {t_k} positions has a key {offset} positions back")
    return picked.mean(-1)


def uniform_causal_weights(t: int) -> torch.Tensor:
    """(T, T) weights of a head that spreads each query evenly over the keys the causal mask allows.

    The baseline for ``attention_entropy`` and ``offset_score``: what a head that has learned nothing scores.
    """
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"t must be an int >= 1, got {t!r}")
    keep = attention_mask(t, t, causal=True).float()
    return keep / keep.sum(-1, keepdim=True)


def _check_weights(weights: torch.Tensor) -> None:
    """Attention weights: float (..., T_q, T_k), non-empty, finite, >= 0, rows summing to 1 (or 0 if fully masked)."""
    if not isinstance(weights, torch.Tensor) or weights.dim() < 2 or not weights.is_floating_point():
        raise ValueError(f"weights must be a float tensor (..., T_q, T_k), got "
                         f"{getattr(weights, 'dtype', type(weights))} {tuple(getattr(weights, 'shape', ()))}")
    if 0 in weights.shape[-2:]:
        raise ValueError(f"weights must hold at least one query and one key, got {tuple(weights.shape)}")
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and >= 0 (softmax outputs)")
    sums = weights.sum(-1)
    if not bool(((sums - 1).abs() < 1e-3).logical_or(sums == 0).all()):
        raise ValueError("every row of weights must sum to 1 (or 0 for a fully masked query): pass softmax outputs")


__all__ = [
    "AttentionConfig", "MultiHeadAttention", "alibi_bias", "alibi_slopes", "apply_rope", "attention_entropy",
    "attention_mask", "load_torch_mha", "offset_score", "rope_cache", "scaled_dot_product_attention",
    "uniform_causal_weights",
]
