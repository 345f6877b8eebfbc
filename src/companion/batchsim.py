"""Batching policies for LLM serving, simulated: static, dynamic and continuous batching on one clock.

A serving step runs the model once over a batch. Its cost has a fixed part (read every weight once)
and a part that grows with the work (FLOPs per token, KV bytes per cached token), so a decode step
for 32 sequences costs about what it costs for one: decoding is bound by memory bandwidth, and
batching is how a server turns that bandwidth into throughput. The policies differ in *when*
requests may join and leave a batch:

- **static**: take up to ``max_batch`` waiting requests, prefill them padded to the longest prompt,
  decode until the longest output is done. A request that finishes early keeps its slot ("held")
  until the whole batch ends, as in padded ``generate``.
- **dynamic**: static, but a batch launches only once ``max_batch`` requests wait or the oldest has
  waited ``max_wait`` seconds (Triton's dynamic batcher): fuller batches for some added delay.
- **continuous** (iteration-level, Orca; vLLM): every step, finished sequences leave and waiting
  ones join, under ``max_batch`` and an optional per-step ``token_budget``; with chunked prefill a
  long prompt is split across steps so that decodes are never stalled behind it.

The step cost comes from a ``CostModel``: ``RooflineCost`` (a GPU's peak FLOP/s and bandwidth
against a model's size) or ``LinearCost`` (fitted to a measured engine). ``latency_stats`` and
``littles_law`` turn token timestamps into the numbers a serving SLO is written in (TTFT, TPOT,
ITL, end-to-end latency, throughput); the real engine in ``companion.serving`` reports the same.

    >>> trace = request_trace(1000, sigma=1.0)
    >>> cost = CostModel.for_gpu("Llama-2-7B", "A100-80GB")
    >>> simulate(trace, "continuous", cost, max_batch=32).stats.tokens_per_s   # vs "static"

References:
- Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models" (OSDI 2022).
- Kwon et al., "Efficient Memory Management for Large Language Model Serving with PagedAttention" (SOSP 2023).
- Agrawal et al., "Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve" (OSDI 2024).
- Williams, Waterman & Patterson, "Roofline: An Insightful Visual Performance Model" (CACM 2009).
- NVIDIA Triton Inference Server docs, "Dynamic Batcher" (max_queue_delay_microseconds).
- Little, "A Proof for the Queuing Formula: L = λW" (Operations Research, 1961).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .data.synthetic import RequestTrace, request_trace
from .kvcache import DTYPE_BYTES, MODELS, kv_bytes

# ---------------------------------------------------------------------------------------------
# Metrics: what a request saw
# ---------------------------------------------------------------------------------------------

SPAN_KINDS = ("queued", "prefill", "decode", "held", "preempted")


@dataclass(frozen=True)
class Span:
    """Request ``request`` spent [start, end) seconds in state ``kind`` (one of ``SPAN_KINDS``).

    "held": finished, but its batch slot stays occupied until the batch ends (static batching's waste);
    "preempted": evicted from the running batch, waiting to resume.
    """

    request: int
    start: float
    end: float
    kind: str

    def __post_init__(self):
        if self.kind not in SPAN_KINDS:
            raise ValueError(f"kind must be one of {SPAN_KINDS}, got {self.kind!r}")
        if not self.end >= self.start:
            raise ValueError(f"a span must end at or after its start, got start={self.start}, end={self.end}")


@dataclass(frozen=True)
class LatencyStats:
    """Per-request latencies (seconds) and whole-run rates.

    ttft (n,): first token time − arrival. e2e (n,): last token time − arrival.
    tpot (m,): (last − first token time) / (tokens − 1), for the m requests with >= 2 tokens.
    itl (k,): every gap between consecutive tokens of a request, all requests pooled.
    duration: last token time − first arrival; tokens_per_s and requests_per_s are over it.
    """

    ttft: np.ndarray
    tpot: np.ndarray
    itl: np.ndarray
    e2e: np.ndarray
    tokens_per_s: float
    requests_per_s: float
    duration: float

    METRICS = ("ttft", "tpot", "itl", "e2e")

    def percentile(self, name: str, q: float) -> float:
        """The q-th percentile (0..100) of metric ``name``; NaN when it has no values (itl: all 1-token outputs)."""
        if name not in self.METRICS:
            raise ValueError(f"name must be one of {self.METRICS}, got {name!r}")
        values = getattr(self, name)
        return float(np.percentile(values, q)) if len(values) else math.nan

    def summary(self, qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
        """``{"ttft_p50": ..., "ttft_p90": ..., ..., "e2e_p99": ..., "tokens_per_s": ..., ...}``."""
        out = {f"{name}_p{q:g}": self.percentile(name, q) for name in self.METRICS for q in qs}
        return out | {"tokens_per_s": self.tokens_per_s, "requests_per_s": self.requests_per_s,
                      "duration": self.duration}


def latency_stats(arrival: Sequence[float], token_times: Sequence[Sequence[float]]) -> LatencyStats:
    """Latencies from when each request arrived and when each of its output tokens was produced.

    arrival: (n,) seconds; token_times[i]: (tokens_i,) non-decreasing times of request i's tokens.

        >>> s = latency_stats([0.0, 1.0], [[0.5, 0.6, 0.8], [1.5]])
        >>> s.ttft, s.e2e, s.tokens_per_s          # itl pools the gaps 0.1, 0.2
        (array([0.5, 0.5]), array([0.8, 0.5]), 2.6666666666666665)
    """
    arrival = np.asarray(arrival, dtype=np.float64)
    if arrival.ndim != 1 or len(arrival) == 0:
        raise ValueError(f"arrival must be a non-empty 1-D sequence, got shape {arrival.shape}")
    if len(token_times) != len(arrival):
        raise ValueError(f"token_times has {len(token_times)} requests but arrival has {len(arrival)}")
    times = [np.asarray(t, dtype=np.float64) for t in token_times]
    for i, t in enumerate(times):
        if t.ndim != 1 or len(t) == 0:
            raise ValueError(f"request {i} has no output tokens; every request needs at least one token time")
        if t[0] < arrival[i]:
            raise ValueError(f"request {i} has a token at {t[0]} before its arrival at {arrival[i]}")
        if len(t) > 1 and np.any(np.diff(t) < 0):
            raise ValueError(f"request {i} has token times that go back in time")
    first = np.array([t[0] for t in times])
    last = np.array([t[-1] for t in times])
    counts = np.array([len(t) for t in times])
    multi = counts > 1
    gaps = [np.diff(t) for t in times if len(t) > 1]
    duration = float(last.max() - arrival.min())
    per_second = 1.0 / duration if duration > 0 else math.inf  # every token at its arrival instant: no time passed
    return LatencyStats(
        ttft=first - arrival,
        tpot=(last - first)[multi] / (counts[multi] - 1),
        itl=np.concatenate(gaps) if gaps else np.zeros(0),
        e2e=last - arrival,
        tokens_per_s=float(counts.sum()) * per_second,
        requests_per_s=len(times) * per_second,
        duration=duration,
    )


def littles_law(arrival: Sequence[float], finish: Sequence[float]) -> tuple[float, float]:
    """Both sides of L = λ·W over the window [first arrival, last finish]: ``(L, λ·W)``.

    L is the time-average number of requests in the system, integrated from the step function N(t)
    (+1 at each arrival, −1 at each finish); λ = n / window is the completion rate and W the mean
    time in system. The window starts and ends empty, so the two agree exactly (up to rounding):
    the area under N(t) is the sum of the times in system, counted once by time and once by request.

        >>> littles_law([0, 1], [2, 4])   # N = 1, 2, 1 on [0,1), [1,2), [2,4): area 5 over 4 s
        (1.25, 1.25)
    """
    arrival, finish = np.asarray(arrival, dtype=np.float64), np.asarray(finish, dtype=np.float64)
    if arrival.ndim != 1 or arrival.shape != finish.shape or len(arrival) == 0:
        raise ValueError(f"arrival and finish must be non-empty 1-D of one length, got {arrival.shape} and "
                         f"{finish.shape}")
    if np.any(finish < arrival):
        raise ValueError(f"request {int(np.argmax(finish < arrival))} finishes before it arrives")
    window = float(finish.max() - arrival.min())
    if window == 0:
        return 0.0, 0.0  # nothing was ever in the system for a positive time
    events = np.concatenate([arrival, finish])
    change = np.concatenate([np.ones_like(arrival), -np.ones_like(finish)])
    order = np.argsort(events, kind="stable")
    t, in_system = events[order], np.cumsum(change[order])  # N(t) on [t[j], t[j+1])
    area = float(np.sum(in_system[:-1] * np.diff(t)))
    return area / window, len(arrival) / window * float(np.mean(finish - arrival))


# ---------------------------------------------------------------------------------------------
# Cost models: seconds per step
# ---------------------------------------------------------------------------------------------

# Parameter counts from the model cards and papers (Llama 2 paper, Touvron et al. 2023, Table 1;
# Meta Llama 3 model card; Mistral 7B paper, Jiang et al. 2023; GPT-2 checkpoints' config.json).
N_PARAMS = {
    "GPT-2 124M": 124e6,
    "GPT-2 XL": 1.56e9,
    "Llama-2-7B": 6.74e9,
    "Llama-2-13B": 13.0e9,
    "Llama-2-70B": 69e9,
    "Llama-3-8B": 8.03e9,
    "Llama-3-70B": 70.6e9,
    "Mistral-7B": 7.24e9,
}

# Dense (no sparsity) peak FLOP/s per dtype and HBM bandwidth, B/s, from the NVIDIA A100 Tensor
# Core GPU datasheet (80GB SXM: 312 TFLOPS fp16/bf16, 624 TOPS int8, 19.5 TFLOPS fp32, 2,039 GB/s)
# and the H100 datasheet (SXM: 989 TFLOPS fp16/bf16, 1,979 TOPS int8, 67 TFLOPS fp32, 3.35 TB/s;
# the datasheet's headline figures are with sparsity, twice these).
GPUS = {
    "A100-80GB": ({"fp16": 312e12, "bf16": 312e12, "int8": 624e12, "fp32": 19.5e12}, 2.039e12),
    "H100-SXM": ({"fp16": 989e12, "bf16": 989e12, "int8": 1979e12, "fp32": 67e12}, 3.35e12),
}


@dataclass(frozen=True)
class CostModel:
    """Seconds one model step takes: ``step_seconds(prefill_tokens, decode_seqs, context_tokens)``.

    prefill_tokens: prompt tokens processed this step (all sequences, padding included);
    decode_seqs: sequences decoding one token this step;
    context_tokens: cached tokens the step's attention reads (all sequences summed).
    Inputs may be ints or integer arrays (broadcast: one step per element).

    Two kinds: ``CostModel.for_gpu`` gives a ``RooflineCost``, ``CostModel.fit`` a ``LinearCost``.
    """

    def step_seconds(self, prefill_tokens, decode_seqs, context_tokens):
        raise NotImplementedError

    @staticmethod
    def for_gpu(model: str, gpu: str = "A100-80GB", dtype: str = "fp16", overhead: float = 0.0) -> RooflineCost:
        """The roofline of ``model`` (a key of ``N_PARAMS``) on ``gpu`` (a key of ``GPUS``); weights, KV in ``dtype``."""
        if model not in N_PARAMS:
            raise ValueError(f"model must be one of {sorted(N_PARAMS)}, got {model!r}")
        if gpu not in GPUS:
            raise ValueError(f"gpu must be one of {sorted(GPUS)}, got {gpu!r}")
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of {sorted(DTYPE_BYTES)}, got {dtype!r}")
        flops, bandwidth = GPUS[gpu]
        return RooflineCost(n_params=N_PARAMS[model], weight_bytes=N_PARAMS[model] * DTYPE_BYTES[dtype],
                            kv_bytes_per_token=kv_bytes(MODELS[model], 1, dtype=dtype), peak_flops=flops[dtype],
                            bandwidth=bandwidth, overhead=overhead)

    @staticmethod
    def fit(rows: Iterable[Sequence[float]]) -> LinearCost:
        """Least squares, coefficients >= 0, of seconds = a + b·prefill_tokens + c·decode_seqs + d·context_tokens.

        rows: (prefill_tokens, decode_seqs, context_tokens, seconds) per measured step, at least 4,
        varied enough to separate the terms (e.g. prefills of several lengths, decodes at several batch sizes).
        """
        from scipy.optimize import nnls

        data = np.asarray(list(rows), dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != 4:
            raise ValueError(f"rows must be (prefill_tokens, decode_seqs, context_tokens, seconds) tuples, got shape "
                             f"{data.shape}")
        if len(data) < 4 or not np.isfinite(data).all() or data.min() < 0:
            raise ValueError(f"need at least 4 rows of finite values >= 0 to fit 4 coefficients, got {len(data)} rows")
        X = np.column_stack([np.ones(len(data)), data[:, :3]])
        scale = np.linalg.norm(X, axis=0)
        scale[scale == 0] = 1.0  # a term never seen gets coefficient 0
        coef, _ = nnls(X / scale, data[:, 3])
        a, b, c, d = coef / scale
        return LinearCost(overhead=float(a), per_prefill_token=float(b), per_decode_seq=float(c),
                          per_context_token=float(d))


@dataclass(frozen=True)
class RooflineCost(CostModel):
    """time = overhead + max(FLOPs / peak_flops, bytes / bandwidth), per step.

    FLOPs = 2 · n_params · (prefill_tokens + decode_seqs): a multiply-add per weight per token.
    Attention's own FLOPs (4 · d_model · context per layer and query) are left out: below
    context / (6 · d_model) of the total, < 10% up to 2k context on a 7B model.
    bytes = weight_bytes (read once per step, shared by the batch)
          + kv_bytes_per_token · context_tokens (KV read) + kv_bytes_per_token · new tokens (KV written).
    A prefill of a few hundred tokens is compute-bound. A decode step of B sequences does 2·B FLOPs
    per weight read, so it stays bandwidth-bound until B ≈ ``ridge_point`` · bytes per weight / 2
    (≈ ridge_point in fp16, ~150 sequences on an A100), before counting its KV reads.
    """

    n_params: float
    weight_bytes: float
    kv_bytes_per_token: float
    peak_flops: float
    bandwidth: float
    overhead: float = 0.0

    def __post_init__(self):
        for name in ("n_params", "weight_bytes", "peak_flops", "bandwidth"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        for name in ("kv_bytes_per_token", "overhead"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")

    @property
    def ridge_point(self) -> float:
        """FLOPs per byte at which compute and bandwidth take equal time: peak_flops / bandwidth."""
        return self.peak_flops / self.bandwidth

    def step_seconds(self, prefill_tokens, decode_seqs, context_tokens):
        p, d, c = _check_step(prefill_tokens, decode_seqs, context_tokens)
        flops = 2.0 * self.n_params * (p + d)
        nbytes = self.weight_bytes + self.kv_bytes_per_token * (c + p + d)
        return self.overhead + np.maximum(flops / self.peak_flops, nbytes / self.bandwidth)


@dataclass(frozen=True)
class LinearCost(CostModel):
    """time = overhead + per_prefill_token · prefill_tokens + per_decode_seq · decode_seqs
            + per_context_token · context_tokens, per step.

    What ``CostModel.fit`` returns for a measured engine; also a handy exact model for tests
    (``LinearCost(overhead=1.0)``: every step takes one second).
    """

    overhead: float = 0.0
    per_prefill_token: float = 0.0
    per_decode_seq: float = 0.0
    per_context_token: float = 0.0

    def __post_init__(self):
        for name in ("overhead", "per_prefill_token", "per_decode_seq", "per_context_token"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")

    def step_seconds(self, prefill_tokens, decode_seqs, context_tokens):
        p, d, c = _check_step(prefill_tokens, decode_seqs, context_tokens)
        return self.overhead + self.per_prefill_token * p + self.per_decode_seq * d + self.per_context_token * c


def _check_step(prefill_tokens, decode_seqs, context_tokens):
    values = [np.asarray(x) if not isinstance(x, int) else x for x in (prefill_tokens, decode_seqs, context_tokens)]
    for name, x in zip(("prefill_tokens", "decode_seqs", "context_tokens"), values):
        if isinstance(x, int):
            if x < 0:
                raise ValueError(f"{name} must be >= 0, got {x}")
        elif x.dtype.kind not in "iu" or (x.size and x.min() < 0):
            raise ValueError(f"{name} must be integers >= 0, got dtype {x.dtype}")
    return values


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------

POLICIES = ("static", "dynamic", "continuous")


@dataclass(frozen=True)
class StepLog:
    """One entry per model step, (n_steps,) arrays: start and end times (s); running = occupied batch
    slots (held ones included); prefill_tokens, decode_seqs, context_tokens as given to the cost
    model; useful = sequences that got work this step (a prompt chunk or a token)."""

    start: np.ndarray
    end: np.ndarray
    running: np.ndarray
    prefill_tokens: np.ndarray
    decode_seqs: np.ndarray
    context_tokens: np.ndarray
    useful: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class SimResult:
    """What ``simulate`` returns for ``policy`` with ``max_batch`` slots.

    token_times[i]: (output_len_i,) times of request i's tokens;
    arrival, finish: (n,); spans: each request's queued/prefill/decode/held intervals (for the Gantt);
    utilization: useful slots / max_batch, averaged over steps weighted by their duration;
    little: ``littles_law(arrival, finish)``."""

    policy: str
    token_times: list[np.ndarray]
    arrival: np.ndarray
    finish: np.ndarray
    steps: StepLog
    spans: list[Span]
    stats: LatencyStats = field(init=False)
    utilization: float = field(init=False)
    little: tuple[float, float] = field(init=False)
    max_batch: int = 8

    def __post_init__(self):
        self.stats = latency_stats(self.arrival, self.token_times)
        busy = self.steps.end - self.steps.start
        total = float(busy.sum())
        self.utilization = float(np.sum(self.steps.useful * busy) / (self.max_batch * total)) if total > 0 else 0.0
        self.little = littles_law(self.arrival, self.finish)


def simulate(
    trace: RequestTrace,
    policy: str,
    cost: CostModel,
    max_batch: int = 8,
    max_wait: float = 0.0,
    token_budget: int | None = None,
    chunked_prefill: bool = False,
    kv_capacity_tokens: int | None = None,
) -> SimResult:
    """Serve ``trace`` under ``policy`` ("static", "dynamic" or "continuous") on a clock driven by ``cost``.

    Each step's duration is ``cost.step_seconds(...)``; a token is stamped at the end of the step
    that produced it (the step finishing a prompt produces the first token); an idle server jumps
    to the next arrival. Requests are served first come, first served.

    max_batch: sequences in a batch (slots). max_wait: "dynamic" only, how long the oldest waiting
    request may wait for the batch to fill. token_budget, chunked_prefill: "continuous" only, the
    most prefill + decode tokens per step, and whether a prompt may be split across steps to fit it.
    kv_capacity_tokens: KV cache size in tokens; a static batch reserves batch · (longest prompt +
    longest output), padded; continuous batching reserves prompt_len + output_len per running
    request (the exact need, known in a simulation; a paged engine allocates as it goes instead).
    """
    if not isinstance(trace, RequestTrace):
        raise ValueError(f"trace must be a RequestTrace (companion.data.request_trace), got {type(trace).__name__}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not callable(getattr(cost, "step_seconds", None)):
        raise ValueError(f"cost must have a step_seconds(prefill_tokens, decode_seqs, context_tokens) method, got "
                         f"{type(cost).__name__}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
        raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
    if isinstance(max_wait, bool) or not isinstance(max_wait, numbers.Real) or not 0 <= max_wait < math.inf:
        raise ValueError(f"max_wait must be a finite number of seconds >= 0, got {max_wait!r}")
    longest_prompt = int(trace.prompt_len.max())
    if token_budget is not None:
        if isinstance(token_budget, bool) or not isinstance(token_budget, (int, np.integer)) or token_budget < 1:
            raise ValueError(f"token_budget must be None or an int >= 1, got {token_budget!r}")
        if not chunked_prefill and token_budget < longest_prompt:
            raise ValueError(f"token_budget={token_budget} is below the longest prompt ({longest_prompt}), which "
                             f"could never be scheduled whole; raise it or set chunked_prefill=True")
    if kv_capacity_tokens is not None:
        need = int((trace.prompt_len + trace.output_len).max())
        if isinstance(kv_capacity_tokens, bool) or not isinstance(kv_capacity_tokens, (int, np.integer)) \
                or kv_capacity_tokens < need:
            raise ValueError(f"kv_capacity_tokens must be None or an int >= the largest prompt_len + output_len "
                             f"({need}), got {kv_capacity_tokens!r}")
    if policy == "continuous":
        times, first, steps = _continuous(trace, cost, int(max_batch), token_budget, chunked_prefill,
                                          kv_capacity_tokens)
        held_until = None
    else:
        times, first, held_until, steps = _batched(trace, cost, int(max_batch),
                                                   max_wait if policy == "dynamic" else 0.0, kv_capacity_tokens)
    finish = np.array([t[-1] for t in times])
    return SimResult(policy, times, trace.arrival.copy(), finish, steps,
                     _spans(trace.arrival, first, times, held_until), max_batch=int(max_batch))


def _batched(trace: RequestTrace, cost: CostModel, max_batch: int, max_wait: float, capacity: int | None):
    """Static and dynamic batching: whole batches, padded, held until the longest output is done.

    Returns (token_times, prefill start per request, end of each request's batch, StepLog).
    """
    arrival, P, O = trace.arrival, trace.prompt_len, trace.output_len
    n = len(trace)
    times: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    first, held_until = np.zeros(n), np.zeros(n)
    logs, clock, head = [], 0.0, 0  # head: oldest request not yet served
    while head < n:
        clock = max(clock, arrival[head])  # idle: wait for a request
        if max_wait > 0:  # dynamic: launch when full or when the oldest has waited max_wait
            full_at = arrival[head + max_batch - 1] if head + max_batch <= n else math.inf
            clock = max(clock, min(full_at, arrival[head] + max_wait))
        size = int(np.searchsorted(arrival, clock, side="right")) - head  # waiting now
        size = min(size, max_batch)
        if capacity is not None:  # padded KV: size · (longest prompt + longest output) must fit
            need = np.maximum.accumulate(P[head:head + size]) + np.maximum.accumulate(O[head:head + size])
            size = int(np.sum(need * np.arange(1, size + 1) <= capacity))  # need·k grows with k
        batch = slice(head, head + size)
        p_max, o_max = int(P[batch].max()), int(O[batch].max())
        # step 0 prefills every slot padded to p_max; decode step k = 1 .. o_max - 1 runs every slot,
        # finished or not, reading size · (p_max + k - 1) cached tokens
        k = np.arange(o_max)
        prefill = np.zeros(o_max, np.int64)
        prefill[0] = size * p_max
        decode = np.full(o_max, size, np.int64)
        decode[0] = 0
        context = size * (p_max + k - 1)
        context[0] = 0
        end = clock + np.cumsum(np.broadcast_to(cost.step_seconds(prefill, decode, context), (o_max,)))
        for i in range(head, head + size):
            times[i] = end[:O[i]].copy()  # token j of request i comes out of step j
        first[batch], held_until[batch] = clock, end[-1]
        useful = (O[batch][None, :] > k[:, None]).sum(1)  # slots still producing tokens
        start = np.concatenate([[clock], end[:-1]])
        logs.append((start, end, np.full(o_max, size), prefill, decode, context, useful))
        clock, head = float(end[-1]), head + size
    return times, first, held_until, StepLog(*(np.concatenate(parts) for parts in zip(*logs)))


def _continuous(trace: RequestTrace, cost: CostModel, max_batch: int, token_budget: int | None,
                chunked: bool, capacity: int | None):
    """Iteration-level scheduling: each step, admit in arrival order, decode first, then prefill.

    Returns (token_times, start of each request's first prefill step, StepLog).
    """
    arrival = trace.arrival.tolist()
    P, O = trace.prompt_len.tolist(), trace.output_len.tolist()
    n = len(arrival)
    budget_cap = token_budget if token_budget is not None else 1 << 62
    capacity = capacity if capacity is not None else math.inf
    times: list[list[float]] = [[] for _ in range(n)]
    first = [math.nan] * n
    prefilled = [0] * n  # prompt tokens in the cache
    running: list[int] = []  # admission order
    reserved, clock, head, done = 0, 0.0, 0, 0
    log: list[tuple] = []
    while done < n:
        while head < n and arrival[head] <= clock and len(running) < max_batch \
                and reserved + P[head] + O[head] <= capacity:
            running.append(head)
            reserved += P[head] + O[head]
            head += 1
        if not running:
            clock = arrival[head]
            continue
        budget = budget_cap
        decodes = [r for r in running if prefilled[r] == P[r]][:budget]
        budget -= len(decodes)
        chunks = []  # (request, prompt tokens this step)
        for r in running:
            left = P[r] - prefilled[r]
            if left == 0:
                continue
            take = min(left, budget) if chunked else (left if left <= budget else 0)
            if take == 0:
                break  # first come, first served: no later prompt jumps ahead
            chunks.append((r, take))
            budget -= take
        prefill_tokens = sum(take for _, take in chunks)
        context = sum(P[r] + len(times[r]) - 1 for r in decodes) + sum(prefilled[r] for r, _ in chunks)
        end = clock + float(cost.step_seconds(prefill_tokens, len(decodes), context))
        log.append((clock, end, len(running), prefill_tokens, len(decodes), context, len(decodes) + len(chunks)))
        for r in decodes:
            times[r].append(end)
        for r, take in chunks:
            if prefilled[r] == 0:
                first[r] = clock
            prefilled[r] += take
            if prefilled[r] == P[r]:
                times[r].append(end)  # the step that completes the prompt yields the first token
        finished = [r for r in running if len(times[r]) == O[r]]
        for r in finished:
            running.remove(r)
            reserved -= P[r] + O[r]
        done += len(finished)
        clock = end
    steps = StepLog(*(np.array(col, dtype=np.float64 if j < 2 else np.int64) for j, col in enumerate(zip(*log))))
    return [np.array(t) for t in times], np.array(first), steps


def _spans(arrival: np.ndarray, first: np.ndarray, times: list[np.ndarray],
           held_until: np.ndarray | None) -> list[Span]:
    """Each request's timeline: queued until its first prefill step, prefill until its first token,
    decode until its last; under static/dynamic batching, held until its batch's last step."""
    spans = []
    for i, t in enumerate(times):
        edges = [(arrival[i], first[i], "queued"), (first[i], t[0], "prefill"), (t[0], t[-1], "decode")]
        if held_until is not None:
            edges.append((t[-1], held_until[i], "held"))
        spans += [Span(i, float(a), float(b), kind) for a, b, kind in edges if b > a]
    return spans


__all__ = [
    "CostModel", "GPUS", "LatencyStats", "LinearCost", "N_PARAMS", "POLICIES", "RequestTrace", "RooflineCost",
    "SPAN_KINDS", "SimResult", "Span", "StepLog", "latency_stats", "littles_law", "request_trace", "simulate",
]
