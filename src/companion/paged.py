"""Paged KV cache: fixed-size blocks, block tables, reference counts, copy-on-write and prefix caching.

A contiguous KV cache must reserve room for the longest sequence a request *might* reach; most of
that reservation is never written. PagedAttention (Kwon et al., 2023) stores each sequence's keys
and values in fixed-size **blocks** of ``block_size`` tokens, drawn from one shared pool on
demand, exactly as an operating system pages virtual memory: a per-sequence **block table** maps
logical block i (tokens i·bs … (i+1)·bs − 1) to a physical block. Waste is at most one partly
filled block per sequence.

Because blocks are indirections, they can be shared:

- ``fork`` gives a child sequence its parent's table and bumps every block's **reference
  count** (parallel sampling, beam search). A shared block is read-only; the first write into a
  shared, partly filled last block **copies it** (copy-on-write) so siblings never see each
  other's tokens.
- **Prefix caching**: a full block is named by a chained hash of its tokens and of everything
  before it, ``h_i = hash(h_{i−1}, tokens_i)``. A new request whose prompt starts with the same
  blocks (a shared system prompt) reuses them instead of recomputing. Blocks whose last reference
  is dropped keep their contents and stay findable until the pool needs them: they are
  **evicted in least-recently-used order**. A hit is verified against the stored tokens and the
  exact parent block, so a hash collision can cost a miss, never a wrong answer.

``BlockAllocator`` does the bookkeeping (no tensors); ``PagedKVCache`` adds the per-layer pools
(n_layer, num_blocks, block_size, H_kv, head_dim) and applies the copies; ``paged_attention``
reads keys and values through block tables and equals attention over contiguous tensors.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

ROOT = None  # the parent of a sequence's first block


class OutOfBlocks(RuntimeError):
    """The pool has fewer free (or evictable) blocks than the operation needs; nothing was changed."""


def default_block_hash(parent: int | None, tokens: tuple[int, ...]) -> int:
    """The chained hash of one full block: its tokens and its parent's hash (deterministic for ints)."""
    return hash((parent, tokens))


@dataclass
class PrefixStats:
    queried_tokens: int = 0  # prompt tokens looked up in the prefix cache
    hit_tokens: int = 0  # of those, found in cached blocks
    evictions: int = 0  # cached blocks whose contents were dropped to make room
    collisions: int = 0  # hash matches rejected by the token / parent check
    copies: int = 0  # copy-on-write block copies

    @property
    def hit_rate(self) -> float:
        return self.hit_tokens / self.queried_tokens if self.queried_tokens else 0.0


class BlockAllocator:
    """Block tables over a pool of ``num_blocks`` blocks of ``block_size`` tokens.

    Sequences are named by any hashable id. Every method either succeeds or raises without
    changing any state (``OutOfBlocks`` when the pool is short, ``ValueError`` for misuse).
    """

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True,
                 max_blocks_per_seq: int | None = None,
                 block_hash: Callable[[int | None, tuple[int, ...]], int] = default_block_hash):
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if max_blocks_per_seq is not None and (not isinstance(max_blocks_per_seq, int) or max_blocks_per_seq < 1):
            raise ValueError(f"max_blocks_per_seq must be an int >= 1 or None, got {max_blocks_per_seq!r}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.prefix_caching, self.block_hash = prefix_caching, block_hash
        self.max_blocks_per_seq = max_blocks_per_seq or num_blocks
        self.ref = [0] * num_blocks
        self.free_queue: OrderedDict[int, None] = OrderedDict.fromkeys(range(num_blocks))  # LRU first
        self.generation = [0] * num_blocks  # bumped whenever a block's contents are thrown away
        self.hash_of: dict[int, int] = {}  # full, cached block -> its chained hash
        self.key_of: dict[int, tuple] = {}  # full, cached block -> ((parent block, its generation) | None, tokens)
        self.cached: dict[int, int] = {}  # chained hash -> block
        self.tables: dict[Hashable, list[int]] = {}
        self.tokens: dict[Hashable, list[int]] = {}
        self.freed: set[Hashable] = set()
        self.stats = PrefixStats()

    # --- queries --------------------------------------------------------------------------------

    @property
    def num_free(self) -> int:
        """Blocks with no reference: never used, or cached and evictable."""
        return len(self.free_queue)

    @property
    def num_used(self) -> int:
        return self.num_blocks - self.num_free

    @property
    def num_cached_free(self) -> int:
        return sum(1 for b in self.free_queue if b in self.hash_of)

    def length(self, seq: Hashable) -> int:
        return len(self._tokens(seq))

    def block_table(self, seq: Hashable) -> list[int]:
        return list(self._table(seq))

    def blocks_for(self, n_tokens: int) -> int:
        return -(-n_tokens // self.block_size)

    def cached_prefix(self, tokens: Sequence[int]) -> list[int]:
        """The cached blocks that hold the longest block-aligned prefix of ``tokens`` (without touching them).

        The last token is never served from the cache: its logits are needed, so at least one
        token of every prompt is computed.
        """
        return self._lookup(tokens)[0]

    def _lookup(self, tokens: Sequence[int]) -> tuple[list[int], bool]:
        """(cached blocks of the prefix, whether the walk stopped at a hash collision)."""
        if not self.prefix_caching:
            return [], False
        blocks, parent_hash, parent = [], ROOT, ROOT
        for i in range((len(tokens) - 1) // self.block_size):
            chunk = tuple(tokens[i * self.block_size:(i + 1) * self.block_size])
            h = self.block_hash(parent_hash, chunk)
            block = self.cached.get(h)
            if block is None:
                break
            if self.key_of[block] != (parent, chunk):
                return blocks, True
            blocks.append(block)
            parent_hash, parent = h, (block, self.generation[block])
        return blocks, False

    def can_allocate(self, tokens: Sequence[int]) -> bool:
        return self._blocks_needed_new(tokens) <= self.num_free

    # --- operations -----------------------------------------------------------------------------

    def allocate(self, seq: Hashable, tokens: Sequence[int]) -> int:
        """Start sequence ``seq`` holding ``tokens``; return how many of them were found in the prefix cache."""
        if seq in self.tables:
            raise ValueError(f"sequence {seq!r} is already allocated")
        tokens = _as_token_list(tokens, "tokens")
        if not tokens:
            raise ValueError("tokens must hold at least one token to allocate a sequence")
        self._check_capacity(seq, len(tokens))
        hits, collided = self._lookup(tokens)
        needed = self._blocks_needed_new(tokens, hits)
        if needed > self.num_free:
            raise OutOfBlocks(f"sequence {seq!r} needs {needed} new blocks for {len(tokens)} tokens "
                              f"({len(hits)} found in the prefix cache) but only {self.num_free} of "
                              f"{self.num_blocks} are free")
        for block in hits:
            self._take(block)
        self.tables[seq], self.tokens[seq] = list(hits), []
        self.freed.discard(seq)
        self.stats.collisions += int(collided)
        self.stats.queried_tokens += len(tokens)
        self.stats.hit_tokens += len(hits) * self.block_size
        self.tokens[seq] = list(tokens[:len(hits) * self.block_size])
        self._extend(seq, tokens[len(hits) * self.block_size:])
        return len(hits) * self.block_size

    def append(self, seq: Hashable, tokens: Sequence[int]) -> list[tuple[int, int]]:
        """Add ``tokens`` to ``seq``; return the (source, destination) block copies the KV data needs (copy-on-write)."""
        have = self._tokens(seq)
        tokens = _as_token_list(tokens, "tokens")
        self._check_capacity(seq, len(have) + len(tokens))
        table = self.tables[seq]
        partial = len(have) % self.block_size
        cow = bool(tokens) and partial > 0 and self.ref[table[-1]] > 1
        needed = self.blocks_for(len(have) + len(tokens)) - len(table) + int(cow)
        if needed > self.num_free:
            raise OutOfBlocks(f"appending {len(tokens)} tokens to sequence {seq!r} needs {needed} new blocks "
                              f"but only {self.num_free} of {self.num_blocks} are free")
        copies = []
        if cow:  # the last block is shared and not full: write into a private copy
            source = table[-1]
            table[-1] = self._fresh()
            self.ref[source] -= 1  # stays > 0: the siblings still hold it
            copies.append((source, table[-1]))
            self.stats.copies += 1
        self._extend(seq, tokens)
        return copies

    def fork(self, parent: Hashable, child: Hashable) -> None:
        """``child`` starts as a copy of ``parent`` that shares all its blocks (no data copied)."""
        if child in self.tables:
            raise ValueError(f"sequence {child!r} is already allocated")
        table = self._table(parent)
        for block in table:
            self.ref[block] += 1
        self.tables[child], self.tokens[child] = list(table), list(self.tokens[parent])
        self.freed.discard(child)

    def free(self, seq: Hashable) -> None:
        """Drop ``seq``; blocks whose last reference goes become free (cached ones stay findable until evicted)."""
        table = self._table(seq)
        for block in reversed(table):  # the tail is released first, so it is evicted before the prefix
            self.ref[block] -= 1
            if self.ref[block] == 0:
                self.free_queue[block] = None
        del self.tables[seq], self.tokens[seq]
        self.freed.add(seq)

    # --- internals ------------------------------------------------------------------------------

    def _table(self, seq: Hashable) -> list[int]:
        if seq not in self.tables:
            if seq in self.freed:
                raise ValueError(f"sequence {seq!r} was already freed")
            raise ValueError(f"unknown sequence {seq!r}")
        return self.tables[seq]

    def _tokens(self, seq: Hashable) -> list[int]:
        self._table(seq)
        return self.tokens[seq]

    def _check_capacity(self, seq: Hashable, n_tokens: int) -> None:
        if self.blocks_for(n_tokens) > self.max_blocks_per_seq:
            raise ValueError(f"sequence {seq!r} would hold {n_tokens} tokens, past its capacity of "
                             f"{self.max_blocks_per_seq * self.block_size} (max_blocks_per_seq="
                             f"{self.max_blocks_per_seq} × block_size={self.block_size})")

    def _blocks_needed_new(self, tokens: Sequence[int], hits: list[int] | None = None) -> int:
        hits = self.cached_prefix(tokens) if hits is None else hits
        revived = sum(1 for b in hits if self.ref[b] == 0)  # cached but free: leaves the free queue
        return self.blocks_for(len(tokens)) - len(hits) + revived

    def _take(self, block: int) -> None:
        if self.ref[block] == 0:
            del self.free_queue[block]
        self.ref[block] += 1

    def _fresh(self) -> int:
        """A block from the free queue, least recently used first; a cached one loses its contents."""
        block, _ = self.free_queue.popitem(last=False)
        if block in self.hash_of:
            del self.cached[self.hash_of.pop(block)]
            del self.key_of[block]
            self.stats.evictions += 1
        self.generation[block] += 1
        self.ref[block] = 1
        return block

    def _extend(self, seq: Hashable, tokens: list[int]) -> None:
        have, table = self.tokens[seq], self.tables[seq]
        for token in tokens:
            if len(have) == len(table) * self.block_size:
                table.append(self._fresh())
            have.append(token)
            if len(have) % self.block_size == 0:
                self._register(seq, len(have) // self.block_size - 1)

    def _register(self, seq: Hashable, index: int) -> None:
        """Name full block ``index`` of ``seq`` by its chained hash, so later prompts can find it."""
        if not self.prefix_caching:
            return
        table, bs = self.tables[seq], self.block_size
        block = table[index]
        if block in self.hash_of:
            return
        parent_hash = ROOT if index == 0 else self.hash_of.get(table[index - 1])
        if index > 0 and parent_hash is None:
            return  # the parent was not cached (a collision): the chain stops here
        chunk = tuple(self.tokens[seq][index * bs:(index + 1) * bs])
        h = self.block_hash(parent_hash, chunk)
        if h in self.cached:
            if self.cached[h] != block:
                self.stats.collisions += int(self.key_of[self.cached[h]][1] != chunk)
            return  # an identical (or colliding) block is already cached; keep the first
        parent = ROOT if index == 0 else (table[index - 1], self.generation[table[index - 1]])
        self.cached[h], self.hash_of[block], self.key_of[block] = block, h, (parent, chunk)

    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent (used by the property tests)."""
        counts = [0] * self.num_blocks
        for seq, table in self.tables.items():
            n = len(self.tokens[seq])
            assert self.blocks_for(n) == len(table), f"{seq!r}: {n} tokens in {len(table)} blocks"
            for block in table:
                counts[block] += 1
        assert counts == self.ref, "reference counts differ from the block tables"
        assert all((self.ref[b] == 0) == (b in self.free_queue) for b in range(self.num_blocks)), \
            "a block is free and referenced, or neither"
        assert self.num_free + sum(1 for r in self.ref if r > 0) == self.num_blocks, "free + used != total"
        assert {self.cached[h]: h for h in self.cached} == self.hash_of, "hash index out of sync"


def _as_token_list(tokens: Sequence[int], name: str) -> list[int]:
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist()
    tokens = list(tokens)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
        raise ValueError(f"{name} must be a sequence of ints")
    return tokens


class PagedKVCache:
    """The KV pools for every layer, (n_layer, num_blocks, block_size, H_kv, head_dim) each, and their allocator.

    A token's keys are one contiguous row: slot s = block · block_size + offset is row s of the
    layer's pool viewed as (num_blocks · block_size, H_kv, head_dim), so writes are in place.
    """

    def __init__(self, n_layer: int, n_kv_heads: int, head_dim: int, num_blocks: int, block_size: int = 16,
                 dtype: torch.dtype = torch.float32, prefix_caching: bool = True, max_blocks_per_seq: int | None = None):
        self.allocator = BlockAllocator(num_blocks, block_size, prefix_caching, max_blocks_per_seq)
        shape = (n_layer, num_blocks, block_size, n_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)

    @classmethod
    def for_model(cls, model, num_blocks: int, block_size: int = 16, prefix_caching: bool = True) -> PagedKVCache:
        """Pools shaped for a MiniGPT; a sequence may hold up to the model's block size in tokens."""
        cfg = model.cfg
        return cls(cfg.n_layer, cfg.n_kv_head or cfg.n_head, cfg.n_embd // cfg.n_head, num_blocks, block_size,
                   next(model.parameters()).dtype, prefix_caching, -(-cfg.block_size // block_size))

    @property
    def block_size(self) -> int:
        return self.allocator.block_size

    def copy_blocks(self, copies: list[tuple[int, int]]) -> None:
        """Apply copy-on-write: block dst receives block src's keys and values in every layer."""
        for src, dst in copies:
            self.k[:, dst] = self.k[:, src]
            self.v[:, dst] = self.v[:, src]

    def slots(self, seq: Hashable, start: int, end: int) -> list[int]:
        """Flat slot indices (block · block_size + offset) of token positions start … end−1 of ``seq``."""
        table, bs = self.allocator._table(seq), self.block_size
        if not 0 <= start <= end <= len(table) * bs:
            raise ValueError(f"positions {start}..{end - 1} are outside sequence {seq!r}'s {len(table)} blocks")
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

    def write(self, layer: int, slots: torch.Tensor | list[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v (N, H_kv, head_dim) at flat ``slots`` (N,) of one layer's pools."""
        slots = torch.as_tensor(slots, dtype=torch.long)
        n_blocks, bs, h_kv, hd = self.k.shape[1:]
        if k.shape != v.shape or k.shape != (slots.shape[0], h_kv, hd):
            raise ValueError(f"k and v must be (N={slots.shape[0]}, H_kv={h_kv}, head_dim={hd}), "
                             f"got {tuple(k.shape)} and {tuple(v.shape)}")
        self.k[layer].view(n_blocks * bs, h_kv, hd)[slots] = k.to(self.k.dtype)
        self.v[layer].view(n_blocks * bs, h_kv, hd)[slots] = v.to(self.v.dtype)

    def block_tables(self, seqs: Sequence[Hashable]) -> torch.Tensor:
        """(B, max blocks) long: each sequence's table, padded with block 0 (masked out by the context length)."""
        tables = [self.allocator.block_table(s) for s in seqs]
        width = max(len(t) for t in tables)
        return torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.long)


def gather_kv(pool: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
    """pool (num_blocks, bs, H_kv, hd), block_tables (B, n) -> (B, H_kv, n · bs, hd), the blocks laid end to end."""
    b, n = block_tables.shape
    blocks = pool.index_select(0, block_tables.flatten())  # (B · n, bs, H_kv, hd); far faster than pool[tables] on CPU
    return blocks.reshape(b, n * pool.shape[1], pool.shape[2], pool.shape[3]).transpose(1, 2)


def paged_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_tables: torch.Tensor,
                    context_lens: torch.Tensor, query_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Causal attention of q (B, H, T_q, hd) over keys and values stored in blocks.

    k_pool, v_pool (num_blocks, block_size, H_kv, hd); block_tables (B, n) long; context_lens (B,):
    keys 0 … context_lens[b] − 1 of sequence b are valid. Sequence b's queries are its last
    ``query_lens[b]`` tokens (default: T_q for all), at positions context_lens[b] − query_lens[b] + i;
    rows i ≥ query_lens[b] are padding and their outputs are meaningless. Returns (B, H, T_q, hd).
    """
    if q.dim() != 4 or k_pool.dim() != 4 or k_pool.shape != v_pool.shape or q.shape[-1] != k_pool.shape[-1]:
        raise ValueError(f"q must be (B, H, T_q, hd) and k_pool, v_pool equal (num_blocks, block_size, H_kv, hd); "
                         f"got {tuple(q.shape)}, {tuple(k_pool.shape)}, {tuple(v_pool.shape)}")
    b, h, t_q, _ = q.shape
    if h % k_pool.shape[2]:
        raise ValueError(f"query heads ({h}) must be a multiple of KV heads ({k_pool.shape[2]})")
    if block_tables.dtype != torch.long or block_tables.dim() != 2 or block_tables.shape[0] != b:
        raise ValueError(f"block_tables must be a long tensor (B={b}, n), got {block_tables.dtype} "
                         f"{tuple(block_tables.shape)}")
    query_lens = torch.full((b,), t_q) if query_lens is None else query_lens
    if context_lens.dtype != torch.long or query_lens.dtype != torch.long:
        raise ValueError(f"context_lens and query_lens must be long tensors, got {context_lens.dtype} and "
                         f"{query_lens.dtype}")
    capacity = block_tables.shape[1] * k_pool.shape[1]
    if context_lens.shape != (b,) or query_lens.shape != (b,) or bool((query_lens < 1).any()) or \
            bool((query_lens > t_q).any()) or bool((context_lens < query_lens).any()) or \
            bool((context_lens > capacity).any()):
        raise ValueError(f"need context_lens and query_lens of shape (B={b},) with 1 <= query_lens <= T_q={t_q} "
                         f"and query_lens <= context_lens <= {capacity} (the blocks in the tables)")
    return attend_paged(q, k_pool, v_pool, block_tables, paged_mask(context_lens, query_lens, t_q, capacity))


def paged_mask(context_lens: torch.Tensor, query_lens: torch.Tensor, t_q: int, capacity: int) -> torch.Tensor:
    """(B, 1, T_q, capacity) bool: query i of sequence b sees keys up to its position, within the context."""
    q_pos = (context_lens - query_lens)[:, None] + torch.arange(t_q)[None, :]  # (B, T_q)
    k_pos = torch.arange(capacity)
    mask = (k_pos[None, None, :] <= q_pos[:, :, None]) & (k_pos[None, None, :] < context_lens[:, None, None])
    return mask[:, None]


def attend_paged(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_tables: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """``paged_attention`` without the checks, with its mask precomputed (one mask serves every layer of a step)."""
    k, v = gather_kv(k_pool, block_tables), gather_kv(v_pool, block_tables)  # (B, H_kv, capacity, hd)
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask,
                                          enable_gqa=q.shape[1] != k.shape[1])



# ---------------------------------------------------------------------------------------------
# Memory accounting: what each reservation policy wastes on a trace
# ---------------------------------------------------------------------------------------------

RESERVATIONS = ("max_len", "pow2", "oracle", "paged")


def reserved_tokens(length: np.ndarray, final: np.ndarray, policy: str, max_len: int, block_size: int = 16) -> np.ndarray:
    """KV slots held by a sequence of current ``length`` that will end at ``final`` tokens, under ``policy``.

    - "max_len": the model's maximum length, reserved at admission (contiguous, static servers);
    - "pow2": the final length rounded up to a power of two (a bucketed length predictor that is never wrong);
    - "oracle": exactly the final length (a perfect predictor, still reserved up front);
    - "paged": whole blocks of ``block_size`` as tokens arrive — only the last block is partly empty.
    """
    length, final = np.asarray(length), np.asarray(final)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if policy == "max_len":
        return np.full_like(length, max_len)
    if policy == "pow2":
        return np.minimum(2 ** np.ceil(np.log2(np.maximum(final, 1))).astype(np.int64), max_len)
    if policy == "oracle":
        return final.copy()
    if policy == "paged":
        return -(-length // block_size) * block_size
    raise ValueError(f"policy must be one of {RESERVATIONS}, got {policy!r}")


def _decode_steps(prompt_len, output_len, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(current length, final length) of every sequence at each of its decode steps, one row per step."""
    prompt_len, output_len = np.asarray(prompt_len, dtype=np.int64), np.asarray(output_len, dtype=np.int64)
    if prompt_len.shape != output_len.shape or prompt_len.ndim != 1 or len(prompt_len) == 0:
        raise ValueError("prompt_len and output_len must be equal-length, non-empty 1-D arrays")
    if (prompt_len < 1).any() or (output_len < 1).any() or (prompt_len + output_len > max_len).any():
        raise ValueError(f"lengths must be >= 1 with prompt_len + output_len <= max_len={max_len}")
    seq = np.repeat(np.arange(len(prompt_len)), output_len)
    step = np.arange(len(seq)) - np.repeat(np.cumsum(output_len) - output_len, output_len) + 1
    return prompt_len[seq] + step, (prompt_len + output_len)[seq]


def reservation_waste(prompt_len, output_len, policy: str, max_len: int, block_size: int = 16) -> float:
    """Fraction of reserved KV slots holding no token, averaged over every decode step of every sequence.

    A sequence with prompt p and output o holds p + j tokens at its j-th decode step (j = 1 … o); the
    waste is 1 − Σ used / Σ reserved over all those steps, as in the PagedAttention paper's accounting
    of reserved, internally fragmented and used memory (Kwon et al., 2023, Fig. 2).
    """
    length, final = _decode_steps(prompt_len, output_len, max_len)
    return float(1 - length.sum() / reserved_tokens(length, final, policy, max_len, block_size).sum())


def concurrent_sequences(prompt_len, output_len, budget_tokens: int, policy: str, max_len: int,
                         block_size: int = 16) -> float:
    """Sequences a KV budget of ``budget_tokens`` sustains at once: the budget over the mean reservation per sequence.

    The mean is taken over every decode step of every sequence (a sequence in steady state is at
    a random point of its life): max_len reservation gives budget / max_len; paged gives about
    budget / (mean current length).
    """
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens < 1:
        raise ValueError(f"budget_tokens must be an int >= 1, got {budget_tokens!r}")
    length, final = _decode_steps(prompt_len, output_len, max_len)
    return budget_tokens / float(reserved_tokens(length, final, policy, max_len, block_size).mean())


# ---------------------------------------------------------------------------------------------
# Looking inside the pool: the state of every physical block
# ---------------------------------------------------------------------------------------------

BLOCK_STATES = ("free", "cached", "used", "shared")


@dataclass(frozen=True)
class BlockState:
    """One physical block at one moment: who holds it and how much of it is written.

    state: "free" (no reference, nothing reusable), "cached" (no reference, but its full contents
    are still findable by the prefix cache), "used" (one owner) or "shared" (ref > 1: forked
    siblings or prompts with the same prefix). owners: the sequences whose block tables hold it,
    in allocation order. filled: tokens written in it (block_size for a cached block, 0 for a free
    one). hashed: named in the prefix cache, so a prompt with the same prefix would reuse it.
    """

    block: int
    state: str
    owners: tuple
    ref: int
    filled: int
    hashed: bool


def snapshot(allocator: BlockAllocator) -> list[BlockState]:
    """The state of every block of ``allocator``'s pool, indexed by block id (no state is changed).

    Example: after ``a.allocate("s", range(6))`` with block_size 4, block 0 is used by ("s",) with
    4 tokens, block 1 by ("s",) with 2, and every other block is free.
    """
    if not isinstance(allocator, BlockAllocator):
        raise ValueError(f"allocator must be a paged.BlockAllocator, got {type(allocator).__name__}")
    bs = allocator.block_size
    owners: list[list] = [[] for _ in range(allocator.num_blocks)]
    filled = [0] * allocator.num_blocks
    for seq, table in allocator.tables.items():
        n = len(allocator.tokens[seq])
        for i, block in enumerate(table):
            owners[block].append(seq)
            filled[block] = max(filled[block], min(bs, n - i * bs))
    states = []
    for block in range(allocator.num_blocks):
        ref, hashed = allocator.ref[block], block in allocator.hash_of
        if ref == 0:
            state, fill = ("cached", bs) if hashed else ("free", 0)
        else:
            state, fill = ("shared" if ref > 1 else "used"), filled[block]
        states.append(BlockState(block, state, tuple(owners[block]), ref, fill, hashed))
    return states


__all__ = ["BLOCK_STATES", "BlockAllocator", "BlockState", "OutOfBlocks", "PagedKVCache", "PrefixStats", "RESERVATIONS",
           "attend_paged", "concurrent_sequences", "default_block_hash", "gather_kv", "paged_attention", "paged_mask",
           "reservation_waste", "reserved_tokens", "snapshot"]
