"""A continuous-batching serving engine: a scheduler, a paged KV cache and a batched model step.

The loop every modern LLM server runs (Orca's iteration-level scheduling, vLLM's engine), small
enough to read in one sitting and real enough to serve the book's MiniGPT:

1. **Schedule.** Running sequences go first: each gets its next token (a decode) or its next
   chunk of prompt (**chunked prefill**), within a per-step token budget. When the pool runs out of
   KV blocks, the most recently admitted sequence is **preempted**: its blocks are freed and it
   goes back to the front of the queue, to be recomputed later (its prompt and its output so far
   become one longer prompt — prefix caching often finds most of it still in the pool). Then
   waiting requests are admitted in arrival order while there are sequence slots, budget and free
   blocks.
2. **Run** one forward pass over every scheduled token of every sequence at once: tokens are
   flattened into one (N, d) batch for the projections and MLPs; attention reads each sequence's
   keys and values through its block table (``paged.paged_attention``).
3. **Sample** a token for every sequence whose known tokens are now all computed, with its own
   sampling parameters and random generator; stream it; retire finished sequences.

Greedy outputs are token-identical to one-request-at-a-time generation (``kvcache.generate``),
whatever the batch, the chunking or the preemptions — the tests check it, and against Hugging
Face's ``generate`` with static batching on the same weights.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .attention import apply_rope
from .decoding import SamplingConfig, next_token_logits, pick_next
from .paged import OutOfBlocks, PagedKVCache, paged_attention

GREEDY = SamplingConfig(greedy=True)


@dataclass(frozen=True)
class Request:
    """What a client sends: prompt token ids, how many tokens to generate, and how to pick them."""

    prompt: Sequence[int]
    max_new_tokens: int
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(greedy=True))
    seed: int | None = None  # per-request generator: the same seed gives the same draws, batched or not
    stop_token: int | None = None
    arrival: float = 0.0  # seconds after the start of a replayed trace (``serve``)


@dataclass(frozen=True)
class EngineConfig:
    num_blocks: int = 256  # the KV pool, in blocks
    block_size: int = 16  # tokens per block
    max_num_seqs: int = 32  # sequences in the running batch
    max_batched_tokens: int = 512  # tokens per step: prefill chunks plus one per decode
    chunked_prefill: bool = True  # split a prompt across steps to fit the budget
    prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("num_blocks", "block_size", "max_num_seqs", "max_batched_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@dataclass
class Sequence_:
    """A request inside the engine: its tokens so far and how many of them have keys and values in the cache."""

    id: int
    request: Request
    tokens: list[int]  # prompt + output
    generator: torch.Generator | None
    num_computed: int = 0  # tokens whose KV is in the cache
    output: list[int] = field(default_factory=list)
    arrival_time: float = 0.0  # wall clock (time.perf_counter) when the engine received it
    token_times: list[float] = field(default_factory=list)  # wall clock of each output token
    preemptions: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache, over all admissions
    finished: bool = False


@dataclass(frozen=True)
class StepStats:
    start: float
    end: float
    running: int  # sequences in the batch
    waiting: int  # requests still queued after scheduling
    prefill_tokens: int  # prompt (or recomputed) tokens processed
    decode_tokens: int  # sequences that decoded one token
    blocks_used: int
    preempted: int  # sequences preempted while scheduling this step
    scheduled: tuple[int, ...] = ()  # ids of the sequences in the batch


class Engine:
    """Continuous batching over a paged KV cache for a MiniGPT (learned or rotary positions, any KV heads)."""

    def __init__(self, model, config: EngineConfig = EngineConfig(),
                 on_token: Callable[[int, int], None] | None = None):
        self.model, self.config, self.on_token = model.eval(), config, on_token
        self.cache = PagedKVCache.for_model(model, config.num_blocks, config.block_size, config.prefix_caching)
        self.waiting: deque[Sequence_] = deque()
        self.running: list[Sequence_] = []
        self.sequences: dict[int, Sequence_] = {}
        self.steps: list[StepStats] = []
        self._next_id = 0

    # --- the public loop ------------------------------------------------------------------------

    def add_request(self, request: Request) -> int:
        """Queue a request; return its id. Raises ValueError for a request the engine could never serve."""
        self._validate(request)
        seq = Sequence_(self._next_id, request, [int(t) for t in request.prompt],
                        None if request.seed is None else torch.Generator().manual_seed(request.seed),
                        arrival_time=time.perf_counter())
        self.sequences[seq.id] = seq
        self.waiting.append(seq)
        self._next_id += 1
        return seq.id

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    @torch.no_grad()
    def step(self) -> list[Sequence_]:
        """Schedule, run one batched forward pass, sample; return the sequences that finished."""
        start = time.perf_counter()
        batch, preempted = self._schedule()
        # a decode feeds back the last sampled token; anything else is prompt (or recomputed) tokens
        decodes = sum(1 for seq, n in batch if n == 1 and seq.output and seq.num_computed == len(seq.tokens) - 1)
        blocks_used = self.cache.allocator.num_used
        finished = self._sample(batch, self._forward(batch)) if batch else []
        self.steps.append(StepStats(start, time.perf_counter(), len(batch), len(self.waiting),
                                    sum(n for _, n in batch) - decodes, decodes, blocks_used, preempted,
                                    tuple(seq.id for seq, _ in batch)))
        return finished

    def run(self, requests: Sequence[Request] = ()) -> list[list[int]]:
        """Add ``requests``, step until everything is served, return each request's output tokens in order."""
        ids = [self.add_request(r) for r in requests]
        while self.has_unfinished():
            self.step()
        return [self.sequences[i].output for i in ids]

    # --- scheduling -----------------------------------------------------------------------------

    def _schedule(self) -> tuple[list[tuple[Sequence_, int]], int]:
        """Pick (sequence, number of new tokens) pairs for this step, preempting when blocks run out."""
        cfg, alloc = self.config, self.cache.allocator
        budget, batch, preempted = cfg.max_batched_tokens, [], 0
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(len(seq.tokens) - seq.num_computed, budget)
            new = seq.tokens[seq.num_computed:seq.num_computed + n]
            while True:  # make room: preempt from the back of the batch until this sequence fits
                try:
                    self.cache.copy_blocks(alloc.append(seq.id, new))
                    break
                except OutOfBlocks:
                    victim = self.running.pop()
                    self._preempt(victim)
                    preempted += 1
                    if victim is seq:
                        break
            if i >= len(self.running):
                break  # it preempted itself: nothing behind it is left
            batch.append((seq, n))
            budget -= n
            i += 1
        while self.waiting and not preempted and len(self.running) < cfg.max_num_seqs and budget > 0:
            seq = self.waiting[0]
            hit = len(alloc.cached_prefix(seq.tokens)) * alloc.block_size
            n = len(seq.tokens) - hit
            if n > budget and not cfg.chunked_prefill:
                break
            n = min(n, budget)
            try:
                hit = alloc.allocate(seq.id, seq.tokens[:hit + n])
            except OutOfBlocks:
                break
            self.waiting.popleft()
            seq.num_computed, seq.cached_tokens = hit, seq.cached_tokens + hit
            self.running.append(seq)
            batch.append((seq, n))
            budget -= n
        return batch, preempted

    def _preempt(self, seq: Sequence_) -> None:
        """Free the sequence's blocks and queue it first: its prompt and output will be recomputed."""
        self.cache.allocator.free(seq.id)
        seq.num_computed = 0
        seq.preemptions += 1
        self.waiting.appendleft(seq)

    # --- the model step -------------------------------------------------------------------------

    def _forward(self, batch: list[tuple[Sequence_, int]]) -> torch.Tensor:
        """One pass over every scheduled token; returns the logits (B, V) at each sequence's last scheduled token."""
        model, cache = self.model, self.cache
        cfg = model.cfg
        ids, positions, slots, dest, last = [], [], [], [], []
        t_q = max(n for _, n in batch)
        for b, (seq, n) in enumerate(batch):
            start = seq.num_computed
            ids += seq.tokens[start:start + n]
            positions += range(start, start + n)
            slots.append(cache.slots(seq.id, start, start + n))
            dest += range(b * t_q, b * t_q + n)  # where each flat token sits in the padded (B, T_q) layout
            last.append(len(ids) - 1)
            seq.num_computed += n
        ids, positions = torch.tensor(ids), torch.tensor(positions)
        slots, dest = torch.cat(slots), torch.tensor(dest)
        tables = cache.block_tables([seq.id for seq, _ in batch])
        context = torch.tensor([seq.num_computed for seq, _ in batch])
        query_lens = torch.tensor([n for _, n in batch])
        b, n_head, hd = len(batch), cfg.n_head, cfg.n_embd // cfg.n_head

        x = model.wte(ids)  # (N, d): every new token of every sequence, flattened
        if model.wpe is not None:
            x = x + model.wpe(positions)
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            h = block.ln_1(x)
            q = attn.q_proj(h).view(-1, n_head, hd)  # (N, H, hd)
            k = attn.k_proj(h).view(-1, attn.cfg.n_kv_heads, hd)  # (N, H_kv, hd)
            v = attn.v_proj(h).view(-1, attn.cfg.n_kv_heads, hd)
            if attn.cfg.positions == "rope":
                q = apply_rope(q.transpose(0, 1)[None], attn.rope_cos, attn.rope_sin, positions)[0].transpose(0, 1)
                k = apply_rope(k.transpose(0, 1)[None], attn.rope_cos, attn.rope_sin, positions)[0].transpose(0, 1)
            cache.write(layer, slots, k, v)
            padded = q.new_zeros(b * t_q, n_head, hd)
            padded[dest] = q
            out = paged_attention(padded.view(b, t_q, n_head, hd).transpose(1, 2), cache.k[layer], cache.v[layer],
                                  tables, context, query_lens)  # (B, H, T_q, hd)
            out = out.transpose(1, 2).reshape(b * t_q, n_head * hd)[dest]  # (N, d)
            x = x + attn.out_proj(out)
            x = x + block.mlp(block.ln_2(x))
        return model.lm_head(model.ln_f(x[torch.tensor(last)]))  # (B, V)

    def _sample(self, batch: list[tuple[Sequence_, int]], logits: torch.Tensor) -> list[Sequence_]:
        """Pick the next token of each sequence that has computed all its known tokens; retire finished ones."""
        finished = []
        greedy = logits.argmax(dim=-1).tolist()
        for row, (seq, _) in enumerate(batch):
            if seq.num_computed < len(seq.tokens):
                continue  # a prompt chunk that is not the last: nothing to sample yet
            cfg = seq.request.sampling
            if cfg.greedy and cfg.repetition_penalty is None:
                token = greedy[row]
            else:
                processed = next_token_logits(logits[row:row + 1], torch.tensor([seq.tokens]), cfg)
                token = int(pick_next(processed, cfg, seq.generator)[0])
            seq.tokens.append(token)
            seq.output.append(token)
            seq.token_times.append(time.perf_counter())
            if self.on_token is not None:
                self.on_token(seq.id, token)
            if len(seq.output) == seq.request.max_new_tokens or token == seq.request.stop_token:
                seq.finished = True
                self.running.remove(seq)
                self.cache.allocator.free(seq.id)
                finished.append(seq)
        return finished

    # --- checks ---------------------------------------------------------------------------------

    def _validate(self, request: Request) -> None:
        if not isinstance(request, Request):
            raise ValueError(f"request must be a serving.Request, got {type(request).__name__}")
        prompt, cfg = list(request.prompt), self.model.cfg
        if not prompt or not all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            raise ValueError("request.prompt must be a non-empty sequence of int token ids")
        if min(prompt) < 0 or max(prompt) >= cfg.vocab_size:
            raise ValueError(f"request.prompt ids must be in [0, vocab_size={cfg.vocab_size}), "
                             f"got [{min(prompt)}, {max(prompt)}]")
        n = request.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"request.max_new_tokens must be an int >= 1, got {n!r}")
        total = len(prompt) + n - 1  # the last output token is never fed back, so needs no KV
        if len(prompt) + n > cfg.block_size:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({n}) = {len(prompt) + n} exceeds the "
                             f"model's block_size={cfg.block_size}")
        pool = self.config.num_blocks * self.config.block_size
        if total > pool:
            raise ValueError(f"the request needs KV for {total} tokens but the whole pool holds {pool} "
                             f"(num_blocks={self.config.num_blocks} × block_size={self.config.block_size})")


__all__ = ["Engine", "EngineConfig", "GREEDY", "Request", "StepStats"]
