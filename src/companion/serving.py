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
from .batchsim import LatencyStats, Span, latency_stats
from .decoding import SamplingConfig, next_token_logits, pick_next
from .paged import OutOfBlocks, PagedKVCache, attend_paged, paged_mask

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
    prefill_ids: tuple[int, ...] = ()  # sequences that ran a prompt (or recompute) chunk
    decode_ids: tuple[int, ...] = ()  # sequences that decoded one token
    preempted_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Group:
    """Sequences whose queries attend together: their flat token rows and the padded (B, T_q) layout."""

    tokens: torch.Tensor  # (n,) rows of the flat batch
    dest: torch.Tensor  # (n,) where each sits in the padded (B · T_q) layout
    t_q: int
    tables: torch.Tensor  # (B, blocks)
    mask: torch.Tensor  # (B, 1, T_q, capacity), 0 where a query may attend and -inf elsewhere

    def attend(self, q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor) -> torch.Tensor:
        """q (n, H, hd) -> attention output (n, H, hd), keys and values read through the block tables."""
        b, h, hd = self.tables.shape[0], q.shape[1], q.shape[2]
        if self.t_q > 1:
            q = q.new_zeros(b * self.t_q, h, hd).index_copy_(0, self.dest, q)
        out = attend_paged(q.view(b, self.t_q, h, hd).transpose(1, 2), k_pool, v_pool, self.tables, self.mask)
        out = out.transpose(1, 2).reshape(b * self.t_q, h, hd)
        return out[self.dest] if self.t_q > 1 else out


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
        decoding = [seq.id for seq, n in batch if n == 1 and seq.output and seq.num_computed == len(seq.tokens) - 1]
        prefilling = [seq.id for seq, _ in batch if seq.id not in decoding]
        blocks_used = self.cache.allocator.num_used
        finished = self._sample(batch, self._forward(batch)) if batch else []
        self.steps.append(StepStats(start, time.perf_counter(), len(batch), len(self.waiting),
                                    sum(n for _, n in batch) - len(decoding), len(decoding), blocks_used,
                                    len(preempted), tuple(prefilling), tuple(decoding), tuple(preempted)))
        return finished

    def run(self, requests: Sequence[Request] = ()) -> list[list[int]]:
        """Add ``requests``, step until everything is served, return each request's output tokens in order."""
        ids = [self.add_request(r) for r in requests]
        while self.has_unfinished():
            self.step()
        return [self.sequences[i].output for i in ids]

    # --- what it measured ------------------------------------------------------------------------

    def latency(self) -> LatencyStats:
        """TTFT, inter-token latency, end-to-end latency and throughput of the finished requests (seconds)."""
        done = [s for s in self.sequences.values() if s.finished]
        if not done:
            raise ValueError("no request has finished yet: run the engine first")
        t0 = min(s.arrival_time for s in done)
        return latency_stats([s.arrival_time - t0 for s in done], [[t - t0 for t in s.token_times] for s in done])

    def kv_utilization(self) -> tuple[list[float], list[float]]:
        """(seconds since the first step, fraction of KV blocks in use) at every step."""
        if not self.steps:
            return [], []
        t0 = self.steps[0].start
        return [s.start - t0 for s in self.steps], [s.blocks_used / self.config.num_blocks for s in self.steps]

    def spans(self) -> list[Span]:
        """Each request's life as ``batchsim.Span``s: queued, prefill, decode, preempted (for ``viz.gantt_figure``)."""
        if not self.steps:
            return []
        t0 = min(min(s.arrival_time for s in self.sequences.values()), self.steps[0].start)
        states: dict[int, list[tuple[int, str]]] = {i: [] for i in self.sequences}  # (step index, state)
        for i, step in enumerate(self.steps):
            for kind, ids in (("preempted", step.preempted_ids), ("prefill", step.prefill_ids),
                              ("decode", step.decode_ids)):
                for seq_id in ids:
                    states[seq_id].append((i, kind))
        spans = []
        for seq_id, marks in states.items():
            seq = self.sequences[seq_id]
            if not marks:
                continue
            ends = [self.steps[i].end - t0 for i, _ in marks]
            starts = [self.steps[i].start - t0 for i, _ in marks]
            spans.append(Span(seq_id, seq.arrival_time - t0, starts[0], "queued"))
            run_start = starts[0]
            for j, (i, kind) in enumerate(marks):
                nxt = marks[j + 1] if j + 1 < len(marks) else None
                if kind == "preempted":  # out of the batch until it is scheduled again
                    spans.append(Span(seq_id, starts[j], starts[j + 1] if nxt else ends[j], "preempted"))
                    run_start = starts[j + 1] if nxt else ends[j]
                elif nxt is None or nxt[1] != kind:
                    spans.append(Span(seq_id, run_start, ends[j], kind))
                    run_start = ends[j] if nxt is None or nxt[1] == "preempted" else starts[j + 1]
        return [s for s in spans if s.end > s.start]

    # --- scheduling -----------------------------------------------------------------------------

    def _schedule(self) -> tuple[list[tuple[Sequence_, int]], list[int]]:
        """Pick (sequence, number of new tokens) pairs for this step, preempting when blocks run out."""
        cfg, alloc = self.config, self.cache.allocator
        budget, batch, preempted = cfg.max_batched_tokens, [], []
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
                    preempted.append(victim.id)
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
        ids, positions, slots, last = [], [], [], []
        for seq, n in batch:
            start = seq.num_computed
            ids += seq.tokens[start:start + n]
            positions += range(start, start + n)
            slots += cache.slots(seq.id, start, start + n)
            last.append(len(ids) - 1)
            seq.num_computed += n
        positions, slots = torch.tensor(positions), torch.tensor(slots)
        groups = self._attention_groups(batch)
        x = model.wte(torch.tensor(ids))  # (N, d): every new token of every sequence, flattened
        if model.wpe is not None:
            x = x + model.wpe(positions)
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            h = block.ln_1(x)
            n_head, n_kv, hd = attn.cfg.n_heads, attn.cfg.n_kv_heads, attn.head_dim
            q = attn.q_proj(h).view(-1, n_head, hd)  # (N, H, hd)
            k = attn.k_proj(h).view(-1, n_kv, hd)  # (N, H_kv, hd)
            v = attn.v_proj(h).view(-1, n_kv, hd)
            if attn.cfg.positions == "rope":
                q = apply_rope(q.transpose(0, 1)[None], attn.rope_cos, attn.rope_sin, positions)[0].transpose(0, 1)
                k = apply_rope(k.transpose(0, 1)[None], attn.rope_cos, attn.rope_sin, positions)[0].transpose(0, 1)
            cache.write(layer, slots, k, v)
            out = q.new_empty(q.shape)  # (N, H, hd), contiguous whatever the layout of q
            for g in groups:
                out[g.tokens] = g.attend(q[g.tokens], cache.k[layer], cache.v[layer])
            x = x + attn.out_proj(out.view(-1, n_head * hd))
            x = x + block.mlp(block.ln_2(x))
        return model.lm_head(model.ln_f(x[torch.tensor(last)]))  # (B, V)

    def _attention_groups(self, batch: list[tuple[Sequence_, int]]) -> list[_Group]:
        """Decodes (one query each) and prompt chunks attend separately, so decodes are not padded to a chunk's length."""
        groups, offset, members = [], 0, {True: [], False: []}
        for seq, n in batch:
            members[n == 1].append((seq, range(offset, offset + n)))
            offset += n
        for rows in members.values():
            if rows:
                tables = self.cache.block_tables([seq.id for seq, _ in rows])
                lens = torch.tensor([len(r) for _, r in rows])
                t_q = int(lens.max())
                context = torch.tensor([seq.num_computed for seq, _ in rows])
                dest = torch.cat([torch.arange(b * t_q, b * t_q + len(r)) for b, (_, r) in enumerate(rows)])
                keep = paged_mask(context, lens, t_q, tables.shape[1] * self.cache.block_size)
                bias = torch.zeros(keep.shape).masked_fill_(~keep, float("-inf"))  # additive: converted once per step
                groups.append(_Group(torch.tensor([i for _, r in rows for i in r]), dest, t_q, tables, bias))
        return groups

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
        if not isinstance(request.sampling, SamplingConfig):
            raise ValueError(f"request.sampling must be a decoding.SamplingConfig, got {type(request.sampling).__name__}")
        if not request.sampling.greedy and not request.sampling.temperature > 0:
            raise ValueError(f"request.sampling.temperature must be > 0 when sampling, got "
                             f"{request.sampling.temperature!r} (use greedy=True for argmax)")
        for name in ("seed", "stop_token"):
            value = getattr(request, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"request.{name} must be an int or None, got {value!r}")
        if request.stop_token is not None and not 0 <= request.stop_token < cfg.vocab_size:
            raise ValueError(f"request.stop_token must be in [0, vocab_size={cfg.vocab_size}), got {request.stop_token}")
        total = len(prompt) + n - 1  # the last output token is never fed back, so needs no KV
        if len(prompt) + n > cfg.block_size:
            raise ValueError(f"prompt ({len(prompt)}) + max_new_tokens ({n}) = {len(prompt) + n} exceeds the "
                             f"model's block_size={cfg.block_size}")
        pool = self.config.num_blocks * self.config.block_size
        if total > pool:
            raise ValueError(f"the request needs KV for {total} tokens but the whole pool holds {pool} "
                             f"(num_blocks={self.config.num_blocks} × block_size={self.config.block_size})")




def serve(engine: Engine, requests: Sequence[Request]) -> list[list[int]]:
    """Replay ``requests`` in real time: each joins the engine at its ``arrival`` (seconds after the start).

    Between arrivals an idle engine sleeps, as a server does. Latencies are measured from each
    request's scheduled arrival, so time spent queued counts. Returns the outputs in request order.
    """
    order = sorted(range(len(requests)), key=lambda i: requests[i].arrival)
    if any(requests[i].arrival < 0 for i in order):
        raise ValueError("request arrivals must be >= 0 seconds")
    ids: dict[int, int] = {}
    t0, nxt = time.perf_counter(), 0
    while nxt < len(order) or engine.has_unfinished():
        now = time.perf_counter() - t0
        while nxt < len(order) and requests[order[nxt]].arrival <= now:
            i = order[nxt]
            ids[i] = engine.add_request(requests[i])
            engine.sequences[ids[i]].arrival_time = t0 + requests[i].arrival
            nxt += 1
        if engine.has_unfinished():
            engine.step()
        elif nxt < len(order):
            time.sleep(max(0.0, requests[order[nxt]].arrival - (time.perf_counter() - t0)))
    return [engine.sequences[ids[i]].output for i in range(len(requests))]

# ---------------------------------------------------------------------------------------------
# Baselines: static batching with Hugging Face generate
# ---------------------------------------------------------------------------------------------


@dataclass
class StaticRun:
    """What a static-batching baseline produced: outputs, and the wall-clock time of every output token."""

    outputs: list[list[int]]
    arrival_time: float
    token_times: list[list[float]]
    batches: list[tuple[float, float, list[int]]]  # (start, end, request indices) per generate call

    def latency(self) -> LatencyStats:
        """TTFT, inter-token latency, end-to-end latency and throughput (seconds), every request arriving
        at ``arrival_time`` — the same measures as ``Engine.latency``."""
        if not self.outputs:
            raise ValueError("the run served no requests: there is no latency to report")
        return latency_stats([0.0] * len(self.outputs), [[t - self.arrival_time for t in ts] for ts in self.token_times])

    def spans(self) -> list[Span]:
        """Each request's life as ``batchsim.Span``s, in seconds since ``arrival_time`` (for ``viz.gantt_figure``).

        queued until its batch starts; prefill until its first token; decode until its last token;
        held from its last token until the batch's last token — its slot kept, idle, for the longest output.
        """
        spans = []
        for start, _, members in self.batches:
            end = max(self.token_times[i][-1] for i in members)
            for i in members:
                first, last = self.token_times[i][0], self.token_times[i][-1]
                edges = ((self.arrival_time, start, "queued"), (start, first, "prefill"), (first, last, "decode"),
                         (last, end, "held"))
                spans += [Span(i, a - self.arrival_time, b - self.arrival_time, kind) for a, b, kind in edges if b > a]
        return spans


class _StepClock:
    """A ``transformers`` streamer that only notes when each generation step produced its tokens."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value) -> None:
        if self._prompt_seen:  # the first call hands over the prompt, not a new token
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


@torch.no_grad()
def hf_static_batching(hf_model, requests: Sequence[Request], batch_size: int, pad_token_id: int = 0) -> StaticRun:
    """Serve ``requests`` in arrival order, ``batch_size`` at a time, with ``hf_model.generate`` (greedy).

    Each batch is left-padded to its longest prompt and decodes until its longest request is done
    (``generate`` takes one ``max_new_tokens`` per call); shorter requests keep their slot idle.
    Their own tokens are cut at their ``max_new_tokens``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if any(not r.sampling.greedy or r.stop_token is not None for r in requests):
        raise ValueError("the static-batching baseline serves greedy requests without stop tokens only")
    arrival = time.perf_counter()
    outputs, times, batches = [], [], []
    for first in range(0, len(requests), batch_size):
        group = requests[first:first + batch_size]
        width, longest = max(len(r.prompt) for r in group), max(r.max_new_tokens for r in group)
        if width + longest > hf_model.config.n_positions:
            raise ValueError(f"requests {first}..{first + len(group) - 1}: the longest prompt ({width}) plus the longest "
                             f"output ({longest}) exceeds the model's {hf_model.config.n_positions} positions; a "
                             f"static batch runs every row for the longest output")
        ids = torch.tensor([[pad_token_id] * (width - len(r.prompt)) + list(r.prompt) for r in group])
        mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in group])
        clock, start = _StepClock(), time.perf_counter()
        out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=longest,
                                do_sample=False, use_cache=True, pad_token_id=pad_token_id, streamer=clock)
        batches.append((start, time.perf_counter(), list(range(first, first + len(group)))))
        for row, r in enumerate(group):
            outputs.append(out[row, width:width + r.max_new_tokens].tolist())
            times.append(clock.times[:r.max_new_tokens])
    return StaticRun(outputs, arrival, times, batches)

__all__ = ["Engine", "EngineConfig", "GREEDY", "Request", "StaticRun", "StepStats", "hf_static_batching", "serve"]
