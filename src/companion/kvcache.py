"""The KV cache: keep every layer's keys and values so that each new token costs one token of work.

Without a cache, generating token t+1 reruns the model over all t tokens: O(t) work per layer for
the projections and O(t²) for attention, every step. Keys and values of past tokens never change in
a causal model, so they can be kept. Generation then splits into a *prefill* (the whole prompt in
one pass, filling the cache) and *decode* steps (one token each, reading the cache).

Two caches with the same interface:

- ``KVCache`` preallocates (layers, B, H_kv, T_max, head_dim) once and writes each step in place;
- ``ConcatKVCache`` grows by ``torch.cat``, the naive version: every step copies the whole cache,
  O(T) bytes moved per step, O(T²) over a generation.

Both store H_kv heads, not H: with grouped-query attention the cache shrinks by H / H_kv.
``Int8KVCache`` has the same interface and stores int8 numbers plus float scales, a quarter of
fp32's bytes (half of fp16's); ``write`` hands attention dequantized floats.

    >>> cache = KVCache.for_model(model, batch=1)
    >>> logits = model(prompt_ids, cache=cache)           # prefill: cache.length == T
    >>> logits = model(next_id[:, None], cache=cache)      # decode: one token, T + 1

``generate`` runs that loop with the sampling of ``companion.decoding``.

``kv_bytes`` is the memory calculator, with presets for real models (``MODELS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .quant import absmax_scale, dequantize, quantize  # symmetric int8 (companion.quant has the rest)


class LayerView:
    """What one attention layer sees of the cache: where new tokens go and everything stored so far."""

    def __init__(self, cache: KVCache | ConcatKVCache | Int8KVCache, layer: int):
        self.cache, self.layer = cache, layer

    @property
    def offset(self) -> int:
        """Position of the first new token: the number of tokens already cached."""
        return self.cache.length

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, H_kv, t, hd) after the cached tokens; return all keys and values (B, H_kv, length + t, hd)."""
        return self.cache.write(self.layer, k, v)


class KVCache:
    """Preallocated keys and values for every layer: (n_layer, B, H_kv, max_len, head_dim) each."""

    def __init__(self, n_layer: int, batch: int, n_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        shape = _cache_shape(n_layer, batch, n_kv_heads, head_dim, max_len)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0  # tokens stored (the same for every layer once a forward pass finishes)
        self._pending = 0  # tokens being written by the forward pass in progress

    @classmethod
    def for_model(cls, model, batch: int, max_len: int | None = None, dtype: torch.dtype = torch.float32,
                  **options) -> KVCache:
        """A cache shaped for a MiniGPT: its layers, KV heads and head size; ``max_len`` defaults to its block size.

        ``options`` go to the constructor (e.g. ``key_headroom`` of ``Int8KVCache``).
        """
        cfg = model.cfg
        head_dim = cfg.n_embd // cfg.n_head
        return cls(cfg.n_layer, batch, cfg.n_kv_head or cfg.n_head, head_dim, max_len or cfg.block_size, dtype,
                   next(model.parameters()).device, **options)

    def layer(self, i: int) -> LayerView:
        return LayerView(self, i)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_kv(k, v, self.k.shape[1], self.k.shape[2], self.k.shape[4])
        if k.dtype != self.k.dtype:
            raise ValueError(f"k and v are {k.dtype} but the cache holds {self.k.dtype}; build the cache with "
                             f"dtype={k.dtype}")
        t = k.shape[2]
        if self.length + t > self.capacity:
            raise ValueError(f"appending {t} tokens to {self.length} cached exceeds the cache's max_len={self.capacity}")
        self.k[layer, :, :, self.length:self.length + t] = k
        self.v[layer, :, :, self.length:self.length + t] = v
        self._pending = t
        end = self.length + t
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self) -> None:
        """Called once per forward pass, after every layer wrote: the new tokens become part of the cache."""
        self.length += self._pending
        self._pending = 0

    def nbytes(self) -> int:
        """Bytes held by the cache at full capacity (preallocated: paid up front)."""
        return self.k.numel() * self.k.element_size() * 2


class ConcatKVCache:
    """The naive cache: per layer, ``torch.cat`` the new keys and values onto the old ones every step."""

    def __init__(self, n_layer: int):
        if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
            raise ValueError(f"n_layer must be an int >= 1, got {n_layer!r}")
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer
        self.length = 0
        self._pending = 0
        self.bytes_copied = 0  # bytes moved by torch.cat so far: the cost this variant pays

    @classmethod
    def for_model(cls, model, batch: int | None = None, max_len: int | None = None, dtype=None) -> ConcatKVCache:
        return cls(model.cfg.n_layer)

    def layer(self, i: int) -> LayerView:
        return LayerView(self, i)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.k[layer], self.v[layer]
        if old_k is not None:
            _check_kv(k, v, old_k.shape[0], old_k.shape[1], old_k.shape[3])
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
            self.bytes_copied += 2 * k.numel() * k.element_size()
        self.k[layer], self.v[layer] = k, v
        self._pending = k.shape[2] - self.length
        return k, v

    def advance(self) -> None:
        self.length += self._pending
        self._pending = 0


# ---------------------------------------------------------------------------------------------
# The int8 cache
# ---------------------------------------------------------------------------------------------


class Int8KVCache(KVCache):
    """Keys and values as int8 plus float scales: (n_layer, B, H_kv, max_len, head_dim) int8 each.

    The scales follow where the outliers are (Liu et al., 2024, "KIVI"):

    - **keys per channel**: a scale per (layer, batch row, KV head, channel), shape
      (n_layer, B, H_kv, 1, head_dim). Key outliers sit in a few fixed channels for every token, so
      a per-token scale would be set by the outlier channel and crush the small ones. The scales are
      fixed by the first write of each layer (the prefill); later tokens are quantized against them
      and clamped to their range, and ``clipped`` counts every value the clamp changed. KIVI instead
      requantizes keys in groups of G tokens and keeps the newest ones in full precision; fixing the
      scales at prefill is the simplest version. ``key_headroom`` widens them: the default 2 spends
      one of the eight bits so that later keys up to twice the prefill's largest still fit (on the
      book's model, 1.0 clips about 7% of later keys after a 16-token prefill, 2.0 about 0.2%).
    - **values per token**: a scale per (layer, batch row, KV head, token), shape
      (n_layer, B, H_kv, max_len, 1). Values are mixed across tokens by the attention weights, so
      the error that matters is each token's own; a token's scale comes from itself, so values never clip.

    Symmetric absmax quantization: q = round(x / s) in [-127, 127], x ≈ q · s, error ≤ s / 2.
    ``write`` returns dequantized keys and values in ``dtype`` (the model's compute dtype).
    """

    def __init__(self, n_layer: int, batch: int, n_kv_heads: int, head_dim: int, max_len: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 key_headroom: float = 2.0):
        shape = _cache_shape(n_layer, batch, n_kv_heads, head_dim, max_len)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating-point torch dtype (what write returns), got {dtype!r}")
        if isinstance(key_headroom, bool) or not isinstance(key_headroom, (int, float)) or not key_headroom >= 1:
            raise ValueError(f"key_headroom must be a number >= 1, got {key_headroom!r}")
        self.k = torch.zeros(shape, dtype=torch.int8, device=device)
        self.v = torch.zeros(shape, dtype=torch.int8, device=device)
        self.k_scale = torch.ones(n_layer, batch, n_kv_heads, 1, head_dim, device=device)  # per channel
        self.v_scale = torch.ones(n_layer, batch, n_kv_heads, max_len, 1, device=device)  # per token
        self.k_scale_set = [False] * n_layer  # fixed by each layer's first write
        self.dtype, self.key_headroom = dtype, float(key_headroom)
        self.clipped = 0  # key values clamped to the prefill's range so far
        self.length = 0
        self._pending = 0

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and store k, v (B, H_kv, t, hd); return all keys and values so far, dequantized (B, H_kv, end, hd)."""
        if not (isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor)) or k.dtype != self.dtype \
                or v.dtype != self.dtype:
            raise ValueError(f"k and v must be {self.dtype} tensors (the cache's dtype), got "
                             f"{getattr(k, 'dtype', type(k))} and {getattr(v, 'dtype', type(v))}")
        _check_kv(k, v, self.k.shape[1], self.k.shape[2], self.k.shape[4])
        t, start = k.shape[2], self.length
        if start + t > self.capacity:
            raise ValueError(f"appending {t} tokens to {start} cached exceeds the cache's max_len={self.capacity}")
        end = start + t
        if not self.k_scale_set[layer]:
            self.k_scale[layer] = absmax_scale(k, dim=2) * self.key_headroom  # (B, H_kv, 1, hd): over tokens
            self.k_scale_set[layer] = True
        k_q, clipped = quantize(k, self.k_scale[layer])
        self.clipped += clipped
        v_scale = absmax_scale(v, dim=3)  # (B, H_kv, t, 1): over channels, never clips
        v_q, _ = quantize(v, v_scale)
        self.k[layer, :, :, start:end], self.v[layer, :, :, start:end] = k_q, v_q
        self.v_scale[layer, :, :, start:end] = v_scale
        self._pending = t
        return (dequantize(self.k[layer, :, :, :end], self.k_scale[layer], self.dtype),
                dequantize(self.v[layer, :, :, :end], self.v_scale[layer, :, :, :end], self.dtype))

    def nbytes(self) -> int:
        """Bytes held at full capacity: the int8 keys and values plus their float32 scales."""
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.k_scale, self.v_scale))


def _cache_shape(n_layer: int, batch: int, n_kv_heads: int, head_dim: int, max_len: int) -> tuple[int, ...]:
    """(n_layer, B, H_kv, max_len, head_dim), each checked to be an int >= 1."""
    for name, value in (("n_layer", n_layer), ("batch", batch), ("n_kv_heads", n_kv_heads),
                        ("head_dim", head_dim), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return n_layer, batch, n_kv_heads, max_len, head_dim


def _check_kv(k: torch.Tensor, v: torch.Tensor, batch: int, heads: int, head_dim: int) -> None:
    if k.shape != v.shape or k.dim() != 4 or (k.shape[0], k.shape[1], k.shape[3]) != (batch, heads, head_dim):
        raise ValueError(f"k and v must both be (B={batch}, H_kv={heads}, t, head_dim={head_dim}), "
                         f"got {tuple(k.shape)} and {tuple(v.shape)}")


@torch.no_grad()
def generate(model, prompt: torch.Tensor, max_new_tokens: int, cfg=None, generator: torch.Generator | None = None,
             cache_cls=KVCache) -> torch.Tensor:
    """``decoding.generate`` with a KV cache: one prefill pass over prompt (B, T), then one token per step.

    Returns (B, T + max_new_tokens). The whole sequence must fit the model's block size (a cache
    cannot slide a learned-position window); the same seed gives the same draws as ``decoding.generate``.
    """
    from .decoding import SamplingConfig, next_token_logits, pick_next

    cfg = cfg or SamplingConfig()
    if prompt.dim() != 2 or prompt.dtype != torch.long or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be a long tensor (B, T) with T >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    total = prompt.shape[1] + max_new_tokens
    if total > model.cfg.block_size:
        raise ValueError(f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) = {total} exceeds the "
                         f"model's block_size={model.cfg.block_size}")
    cache = cache_cls.for_model(model, batch=prompt.shape[0], max_len=total)
    ids, step_input = prompt, prompt
    for _ in range(max_new_tokens):
        logits = next_token_logits(model(step_input, cache=cache)[:, -1, :], ids, cfg)  # prefill, then decode
        token = pick_next(logits, cfg, generator)
        ids = torch.cat([ids, token[:, None]], dim=1)
        step_input = token[:, None]
    return ids


# ---------------------------------------------------------------------------------------------
# The memory calculator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """What the KV cache of a decoder depends on."""

    n_layer: int
    n_kv_heads: int
    head_dim: int
    n_heads: int  # query heads: with n_kv_heads < n_heads the model uses GQA (1: MQA)


# Published configurations (model cards / config.json of each release).
MODELS = {
    "GPT-2 124M": ModelShape(12, 12, 64, 12),
    "GPT-2 XL": ModelShape(48, 25, 64, 25),
    "Llama-2-7B": ModelShape(32, 32, 128, 32),
    "Llama-2-13B": ModelShape(40, 40, 128, 40),
    "Llama-2-70B": ModelShape(80, 8, 128, 64),
    "Llama-3-8B": ModelShape(32, 8, 128, 32),
    "Llama-3-70B": ModelShape(80, 8, 128, 64),
    "Mistral-7B": ModelShape(32, 8, 128, 32),
}

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


def kv_bytes(model: str | ModelShape, tokens: int, batch: int = 1, dtype: str = "fp16") -> int:
    """Bytes of keys and values for ``batch`` sequences of ``tokens`` tokens: 2 · L · H_kv · head_dim · bytes · tokens · batch.

    >>> kv_bytes("Llama-3-8B", 8192)        # 1 GiB at 8k context, fp16
    1073741824
    """
    shape = MODELS[model] if isinstance(model, str) and model in MODELS else model
    if not isinstance(shape, ModelShape):
        raise ValueError(f"model must be a ModelShape or one of {sorted(MODELS)}, got {model!r}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or isinstance(batch, bool) or not isinstance(batch, int) \
            or tokens < 0 or batch < 1:
        raise ValueError(f"need tokens >= 0 and batch >= 1, got tokens={tokens}, batch={batch}")
    return 2 * shape.n_layer * shape.n_kv_heads * shape.head_dim * DTYPE_BYTES[dtype] * tokens * batch


__all__ = ["ConcatKVCache", "DTYPE_BYTES", "Int8KVCache", "KVCache", "LayerView", "MODELS", "ModelShape", "absmax_scale",
           "dequantize", "generate", "kv_bytes", "quantize"]
