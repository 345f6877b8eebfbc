"""Speculative decoding: a small draft model guesses, the large target model checks several guesses at once.

Decoding one token costs one forward pass of the target, and at batch 1 that pass is bound by
reading the weights, not by arithmetic: scoring γ + 1 tokens in one pass costs about as much as
scoring one. A cheap draft model proposes γ tokens x₁…x_γ one at a time (sampled from its
distributions q); the target scores all γ + 1 positions in one forward (distributions p); each
draft token is kept with probability min(1, p(x)/q(x)); at the first rejection the replacement is
drawn from normalize(max(0, p − q)); if all γ are kept, a bonus token is drawn from the target's
next distribution. Every step then yields between 1 and γ + 1 tokens, and the output is
distributed *exactly* as sampling from the target alone (Leviathan et al., 2023; Chen et al., 2023).
Greedy decoding is the special case "keep the draft token while it is the target's argmax".

    >>> ids, stats = speculative_generate(target, draft, prompt, max_new_tokens=64, gamma=4)
    >>> stats.tokens_per_step, stats.alpha                       # e.g. 2.9 tokens per target call, α ≈ 0.7

The theory, for a per-token acceptance probability α (the expected overlap Σₓ min(p(x), q(x))):

    tokens per target step  E(α, γ) = (1 − α^(γ+1)) / (1 − α)
    speed-up                 E(α, γ) / (γ·c + v),   c = draft cost / target cost per forward,
                                                  v = cost of a pass over γ + 1 tokens / over one

Both caches roll back after a rejection by moving their length back: ``KVCache`` writes token t
at slot t, so the slots past the new length are simply overwritten by the next pass.

References:
- Leviathan, Kalman & Matias, "Fast Inference from Transformers via Speculative Decoding" (2023).
- Chen et al., "Accelerating Large Language Model Decoding with Speculative Sampling" (2023).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .decoding import SamplingConfig, next_token_logits
from .kvcache import KVCache

# ---------------------------------------------------------------------------------------------
# The theory: tokens per target step, speed-up, the best γ
# ---------------------------------------------------------------------------------------------


def expected_tokens(alpha: float, gamma: int) -> float:
    """Expected tokens per target forward, (1 − α^(γ+1)) / (1 − α) = 1 + α + … + α^γ.

        >>> expected_tokens(0.0, 4), expected_tokens(0.5, 2), expected_tokens(1.0, 4)
        (1.0, 1.75, 5.0)
    """
    _check_alpha(alpha)
    _check_gamma(gamma, minimum=0)
    if alpha == 1:
        return float(gamma + 1)
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


def expected_speedup(alpha: float, gamma: int, c: float, verify_cost: float = 1.0) -> float:
    """Wall-clock speed-up over target-only decoding: E(α, γ) / (γ·c + verify_cost).

    ``c``: a draft forward's time over a target forward's (one token each). ``verify_cost``: the
    target's forward over γ + 1 tokens over its forward over one — 1 in the memory-bound ideal the
    papers assume, somewhat more on a CPU.
    """
    if not (isinstance(c, (int, float)) and c >= 0):
        raise ValueError(f"c (draft cost / target cost) must be a number >= 0, got {c!r}")
    if not (isinstance(verify_cost, (int, float)) and verify_cost > 0):
        raise ValueError(f"verify_cost must be a number > 0, got {verify_cost!r}")
    return expected_tokens(alpha, gamma) / (gamma * c + verify_cost)


def optimal_gamma(alpha: float, c: float, max_gamma: int = 64) -> int:
    """The γ in 1..max_gamma with the largest ``expected_speedup(α, γ, c)``."""
    _check_gamma(max_gamma)
    return max(range(1, max_gamma + 1), key=lambda g: expected_speedup(alpha, g, c))


def acceptance_rate(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """α for each position: Σₓ min(p(x), q(x)) = 1 − TV(p, q). (..., V), (..., V) -> (...).

        >>> acceptance_rate(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5]))
        tensor(0.5000)
    """
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (..., V), got {tuple(p.shape)} and {tuple(q.shape)}")
    return torch.minimum(p, q).sum(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """TV distance ½ Σ |p − q| between two distributions over the same outcomes (flattened)."""
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * float((p.double() - q.double()).abs().sum())


# ---------------------------------------------------------------------------------------------
# The acceptance rule
# ---------------------------------------------------------------------------------------------


def accept_reject(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One verification step of speculative sampling, for B independent rows at once.

    p (B, γ+1, V): the target's distributions at the γ drafted positions and the one after them.
    q (B, γ, V): the draft's distributions that ``draft`` (B, γ) was sampled from.
    Returns n (B,), the draft tokens accepted before the first rejection, and the next token (B,):
    drawn from normalize(max(0, p − q)) at the rejected position, or from p after all γ were kept.
    """
    b, gamma = draft.shape
    p_x = p[:, :gamma].gather(-1, draft[..., None]).squeeze(-1)  # (B, γ): p of each draft token
    q_x = q.gather(-1, draft[..., None]).squeeze(-1)  # (B, γ): q of each draft token (> 0: it was drawn)
    u = torch.rand(b, gamma, generator=generator, dtype=p.dtype, device=p.device)
    accepted = u * q_x < p_x  # u < p/q: kept with probability min(1, p/q)
    n = accepted.long().cumprod(-1).sum(-1)  # (B,): everything after the first rejection is discarded
    residual = torch.cat([(p[:, :gamma] - q).clamp_min(0), p[:, gamma:]], dim=1)  # (B, γ+1, V); row γ: bonus = p
    dist = residual[torch.arange(b), n]  # (B, V), unnormalized: multinomial normalizes
    dist = torch.where(dist.sum(-1, keepdim=True) > 0, dist, p[torch.arange(b), n])  # p == q up to rounding
    return n, torch.multinomial(dist, 1, generator=generator).squeeze(-1)


def accept_greedy(p_logits: torch.Tensor, draft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy verification: keep draft tokens while they equal the target's argmax.

    p_logits (B, γ+1, V), draft (B, γ) -> (n accepted (B,), next token (B,)): the target's argmax at
    the first disagreement, or at position γ + 1 after all γ agreed.
    """
    best = p_logits.argmax(-1)  # (B, γ+1)
    n = (best[:, :-1] == draft).long().cumprod(-1).sum(-1)
    return n, best.gather(-1, n[:, None]).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Generation with a draft and a target MiniGPT, both with KV caches
# ---------------------------------------------------------------------------------------------


@dataclass
class SpecStats:
    """What a speculative run did: one entry per target step (verification forward)."""

    gamma: int
    drafted: list[int] = field(default_factory=list)  # draft tokens proposed at each step (γ, fewer at the end)
    accepted: list[int] = field(default_factory=list)  # of those, kept before the first rejection
    overlap: list[float] = field(default_factory=list)  # Σ min(p, q) at every position that was tried
    target_forwards: int = 0  # verification passes plus the prompt's prefill
    draft_forwards: int = 0
    draft_seconds: float = 0.0  # wall time inside the draft's forward passes
    verify_seconds: float = 0.0  # wall time inside the target's verification passes (prefill excluded)

    @property
    def steps(self) -> int:
        return len(self.accepted)

    @property
    def new_tokens(self) -> int:
        return sum(self.accepted) + self.steps

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens per target step over the steps that drafted the full γ (what E(α, γ) predicts)."""
        full = [a + 1 for a, d in zip(self.accepted, self.drafted) if d == self.gamma]
        return sum(full) / len(full) if full else float("nan")

    @property
    def alpha(self) -> float:
        """α as the mean overlap Σ min(p, q) over the tried positions (greedy: the share where argmaxes agree)."""
        return sum(self.overlap) / len(self.overlap) if self.overlap else float("nan")

    @property
    def alpha_counted(self) -> float:
        """α as accepted draft tokens over tried ones (the maximum-likelihood estimate from the counts)."""
        tried = sum(min(a + 1, d) for a, d in zip(self.accepted, self.drafted))
        return sum(self.accepted) / tried if tried else float("nan")


def processed_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """softmax of the sampling pipeline's logits (temperature, top-k, top-p, min-p), row-wise: (N, V) -> (N, V).

    The target's p and the draft's q go through the same call, so both are the distributions that
    plain sampling with ``cfg`` would draw from; exactness holds for p as processed.
    """
    empty = torch.zeros(logits.shape[0], 0, dtype=torch.long)  # no history: the repetition penalty is refused
    return torch.softmax(next_token_logits(logits.double(), empty, cfg), dim=-1)


@torch.no_grad()
def speculative_generate(target, draft, prompt: torch.Tensor, max_new_tokens: int, gamma: int,
                         cfg: SamplingConfig | None = None, generator: torch.Generator | None = None,
                         draft_cfg: SamplingConfig | None = None) -> tuple[torch.Tensor, SpecStats]:
    """Extend prompt (1, T) by ``max_new_tokens`` tokens with ``draft`` proposing and ``target`` verifying.

    Returns ids (1, T + max_new_tokens) and the run's ``SpecStats``. Greedy ``cfg`` gives exactly the
    target's greedy tokens; otherwise the tokens are distributed as sampling from the target with
    ``cfg``. ``draft_cfg`` (default: ``cfg``) lets the draft sample differently, e.g. at another
    temperature: the output is still exact, only the acceptance rate changes. The target's cache
    holds every token but the last committed one, which opens the next verification pass; the
    draft's cache holds what it has seen of the committed tokens.
    """
    cfg = cfg or SamplingConfig()
    draft_cfg = draft_cfg or cfg
    _check_run(target, draft, prompt, max_new_tokens, gamma, cfg)
    _check_run(target, draft, prompt, max_new_tokens, gamma, draft_cfg)
    if draft_cfg.greedy != cfg.greedy:
        raise ValueError("draft_cfg and cfg must both be greedy or both sample (greedy verification needs argmax drafts)")
    total = prompt.shape[1] + max_new_tokens
    t_cache, d_cache = KVCache.for_model(target, 1, max_len=total), KVCache.for_model(draft, 1, max_len=total)
    stats, ids = SpecStats(gamma), prompt[0].tolist()
    if len(ids) > 1:
        target(prompt[:, :-1], cache=t_cache)  # prefill all but the last prompt token
        stats.target_forwards += 1
    while len(ids) < total:
        g = min(gamma, total - len(ids) - 1)  # never draft past the end
        proposed, q_rows, feed = [], [], ids[d_cache.length:]
        for _ in range(g):  # the draft: g cheap forwards, one token each (its first also catches up)
            start = time.perf_counter()
            logits = draft(torch.tensor([feed]), cache=d_cache)[0, -1:]  # (1, V)
            stats.draft_seconds += time.perf_counter() - start
            if cfg.greedy:  # the filters never move the argmax: no softmax needed
                token = int(logits.argmax())
            else:
                q_rows.append(processed_probs(logits, draft_cfg))
                token = int(torch.multinomial(q_rows[-1], 1, generator=generator))
            proposed.append(token)
            feed = [token]
        stats.draft_forwards += g
        start = time.perf_counter()
        logits = target(torch.tensor([ids[-1:] + proposed]), cache=t_cache)[0]  # (g+1, V): one pass scores all
        stats.verify_seconds += time.perf_counter() - start
        stats.target_forwards += 1
        drafted = torch.tensor([proposed], dtype=torch.long)  # (1, g)
        if cfg.greedy:
            n, nxt = accept_greedy(logits[None], drafted)
            agree = (logits[:g].argmax(-1) == drafted[0]).double()
        else:
            p = processed_probs(logits, cfg)  # (g+1, V)
            q_all = torch.cat(q_rows) if q_rows else p[:0]
            n, nxt = accept_reject(p[None], q_all[None], drafted, generator)
            agree = acceptance_rate(p[:g], q_all)
        n = int(n)
        stats.overlap += agree[: min(n + 1, g)].tolist()  # the positions the acceptance test actually reached
        stats.drafted.append(g)
        stats.accepted.append(n)
        t_cache.length = len(ids) + n  # roll back: keep the last committed token and the n accepted ones
        d_cache.length = min(d_cache.length, len(ids) + n)
        ids += proposed[:n] + [int(nxt)]
    return torch.tensor([ids]), stats


def run_costs(stats: list[SpecStats], spec_seconds: float, base_seconds_per_token: float) -> dict[str, float]:
    """Where the time of speculative runs went, in units of one target-only decode step.

    ``stats``: the runs timed together as ``spec_seconds``; ``base_seconds_per_token``: the
    target-only baseline's wall time over its tokens. Returns c (one draft pass), v (one
    verification pass), other (per step: sampling, the acceptance test, cache bookkeeping) and
    tokens_per_step, so that the speed-up is tokens_per_step / (mean γ · c + v + other) exactly.
    """
    if not stats or not all(isinstance(s, SpecStats) for s in stats):
        raise ValueError(f"stats must be a non-empty list of SpecStats, got {stats!r:.80}")
    for name, value in (("spec_seconds", spec_seconds), ("base_seconds_per_token", base_seconds_per_token)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name} must be a number > 0, got {value!r}")
    steps, drafts = sum(s.steps for s in stats), sum(s.draft_forwards for s in stats)
    if not steps:
        raise ValueError("stats hold no target steps: nothing was generated")
    draft_s, verify_s = sum(s.draft_seconds for s in stats), sum(s.verify_seconds for s in stats)
    unit = base_seconds_per_token
    return {"c": draft_s / drafts / unit if drafts else 0.0, "v": verify_s / steps / unit,
            "other": (spec_seconds - draft_s - verify_s) / steps / unit, "gamma": drafts / steps,
            "tokens_per_step": sum(s.new_tokens for s in stats) / steps}


def target_only_generate(target, prompt: torch.Tensor, max_new_tokens: int, cfg: SamplingConfig | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """The baseline: plain decoding with the target and its KV cache (``kvcache.generate``), (1, T + n)."""
    from .kvcache import generate

    return generate(target, prompt, max_new_tokens, cfg or SamplingConfig(), generator)


# ---------------------------------------------------------------------------------------------
# Measuring: forward cost against tokens, exact and empirical distributions
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def forward_seconds(model, context: int, n_tokens: int, repeat: int = 20) -> float:
    """Median seconds of one cached forward over ``n_tokens`` new tokens after ``context`` cached ones (batch 1)."""
    _check_gamma(n_tokens, name="n_tokens")
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= model.cfg.block_size - n_tokens:
        raise ValueError(f"context must be an int in [1, block_size - n_tokens = {model.cfg.block_size - n_tokens}], "
                         f"got {context!r}")
    ids = torch.randint(0, model.cfg.vocab_size, (1, context + n_tokens), generator=torch.Generator().manual_seed(0))
    cache = KVCache.for_model(model, 1, max_len=context + n_tokens)
    model(ids[:, :context], cache=cache)
    _check_gamma(repeat, name="repeat")
    times = []
    for _ in range(repeat + 2):
        start = time.perf_counter()
        model(ids[:, context:], cache=cache)
        times.append(time.perf_counter() - start)
        cache.length = context  # rewind: every call does the same work
    return sorted(times[2:])[len(times[2:]) // 2]


PASS_BURST = 10  # timed calls per (model, n) turn in pass_seconds


@torch.no_grad()
def pass_seconds(models: list, context: int, ns: list[int], repeat: int = 20) -> list[list[float]]:
    """Median seconds of a cached forward over n new tokens, for every model and every n in ``ns``: [model][n].

    Each model is timed on its own, its n round-robin — each repetition runs every n in turn — so
    that load from other work on the machine falls on all of them alike. A turn is a burst of the
    same pass, timed after one untimed call: a pass right after one of another shape or another
    model runs markedly slower (the CPU's caches hold the last one's data), and decoding repeats one
    shape. These are the costs of each model alone; inside speculative decoding, where draft and
    target passes alternate, ``SpecStats.draft_seconds`` and ``verify_seconds`` record what they cost.
    """
    _check_gamma(repeat, name="repeat")
    if not ns:
        raise ValueError("ns must list at least one pass size")
    for n in ns:
        _check_gamma(n, name="n_tokens")
    setups = []
    for model in models:
        if isinstance(context, bool) or not isinstance(context, int) or \
                not 1 <= context <= model.cfg.block_size - max(ns):
            raise ValueError(f"context must be an int in [1, block_size - max(ns) = "
                             f"{model.cfg.block_size - max(ns)}], got {context!r}")
        ids = torch.randint(0, model.cfg.vocab_size, (1, context + max(ns)), generator=torch.Generator().manual_seed(0))
        cache = KVCache.for_model(model, 1, max_len=context + max(ns))
        model(ids[:, :context], cache=cache)
        setups.append((model, ids, cache))
    times = [[[] for _ in ns] for _ in models]
    for i, (model, ids, cache) in enumerate(setups):
        for rep in range(repeat + 1):
            for j, n in enumerate(ns):
                for call in range(1 + PASS_BURST):  # the first call of a burst is not timed
                    start = time.perf_counter()
                    model(ids[:, context:context + n], cache=cache)
                    elapsed = time.perf_counter() - start
                    cache.length = context  # rewind: every call does the same work
                    if rep and call:  # one warm-up round
                        times[i][j].append(elapsed)
    return [[sorted(t)[len(t) // 2] for t in row] for row in times]


@torch.no_grad()
def sequence_distribution(model, prompt: torch.Tensor, n_new: int, cfg: SamplingConfig | None = None) -> torch.Tensor:
    """The exact probability of every continuation of prompt (1, T) by ``n_new`` tokens under sampling with ``cfg``.

    Enumerates all V^n_new continuations (for toy vocabularies): (V,) * n_new, indexed by the tokens.
    """
    cfg = cfg or SamplingConfig()
    vocab = model.cfg.vocab_size
    if vocab ** n_new > 1_000_000:
        raise ValueError(f"V^n_new = {vocab}^{n_new} continuations is too many to enumerate; use a toy vocabulary")
    conts = torch.cartesian_prod(*[torch.arange(vocab)] * n_new).reshape(-1, n_new)  # (V^n, n)
    seqs = torch.cat([prompt.expand(len(conts), -1), conts], dim=1)
    t = prompt.shape[1]
    logits = model(seqs)[:, t - 1:-1]  # (V^n, n, V): the distribution before each new token
    probs = processed_probs(logits.reshape(-1, vocab), cfg).view(len(conts), n_new, vocab)
    return probs.gather(-1, conts[..., None]).squeeze(-1).prod(-1).view((vocab,) * n_new)


def empirical_distribution(samples: torch.Tensor, vocab: int) -> torch.Tensor:
    """Frequencies of the rows of samples (N, n) over all V^n sequences: (V,) * n."""
    n = samples.shape[1]
    index = (samples * vocab ** torch.arange(n - 1, -1, -1)).sum(-1)
    return (torch.bincount(index, minlength=vocab ** n).double() / len(samples)).view((vocab,) * n)


def markov_speculative(target: torch.Tensor, draft: torch.Tensor, start: torch.Tensor, n_new: int, gamma: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Speculative sampling with toy models given as transition tables, vectorized over many sequences.

    target, draft (V, V): row x is the next-token distribution after token x. start (N,) first
    tokens. Runs rounds of ``accept_reject`` until every sequence has ``n_new`` new tokens: (N, n_new).
    """
    if target.shape != draft.shape or target.dim() != 2 or target.shape[0] != target.shape[1]:
        raise ValueError(f"target and draft must both be (V, V) tables, got {tuple(target.shape)} and "
                         f"{tuple(draft.shape)}")
    _check_gamma(gamma)
    n_seq = len(start)
    out = torch.zeros(n_seq, n_new + gamma + 1, dtype=torch.long)
    length = torch.zeros(n_seq, dtype=torch.long)
    last = start.clone()
    rows = torch.arange(n_seq)
    while bool((length < n_new).any()):
        proposed, prev = [], last
        for _ in range(gamma):
            prev = torch.multinomial(draft[prev], 1, generator=generator).squeeze(-1)
            proposed.append(prev)
        drafted = torch.stack(proposed, 1)  # (N, γ)
        context = torch.cat([last[:, None], drafted], 1)  # (N, γ+1): the token before each scored position
        n, nxt = accept_reject(target[context], draft[context[:, :-1]], drafted, generator)
        emitted = torch.cat([drafted, nxt[:, None]], 1)  # (N, γ+1): the first n drafts, then nxt
        emitted[rows, n] = nxt
        for j in range(gamma + 1):  # write the n + 1 new tokens of every unfinished row
            write = (j <= n) & (length < n_new)
            out[rows[write], (length + j)[write]] = emitted[write, j]
        last = torch.where(length < n_new, nxt, last)
        length = torch.where(length < n_new, length + n + 1, length)
    return out[:, :n_new]


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")


def _check_gamma(gamma: int, minimum: int = 1, name: str = "gamma") -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {gamma!r}")


def _check_run(target, draft, prompt: torch.Tensor, max_new_tokens: int, gamma: int, cfg: SamplingConfig) -> None:
    _check_gamma(gamma)
    _check_gamma(max_new_tokens, minimum=0, name="max_new_tokens")
    if target.cfg.vocab_size != draft.cfg.vocab_size:
        raise ValueError(f"target and draft must share a vocabulary, got vocab_size {target.cfg.vocab_size} "
                         f"and {draft.cfg.vocab_size}")
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 2 or prompt.dtype != torch.long \
            or prompt.shape[0] != 1 or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be a long tensor (1, T) with T >= 1 (one sequence), got "
                         f"{getattr(prompt, 'dtype', type(prompt))} {tuple(getattr(prompt, 'shape', ()))}")
    context = min(target.cfg.block_size, draft.cfg.block_size)
    if prompt.shape[1] + max_new_tokens > context:
        raise ValueError(f"prompt ({prompt.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds the context of "
                         f"{context} tokens (the smaller block_size of target and draft)")
    if isinstance(cfg.temperature, bool) or not isinstance(cfg.temperature, (int, float)) \
            or not (cfg.temperature > 0 and math.isfinite(cfg.temperature)):
        raise ValueError(f"temperature must be a finite number > 0 (greedy=True for T → 0), got {cfg.temperature!r}")
    if cfg.repetition_penalty is not None:
        raise ValueError("repetition_penalty is not supported: it depends on the history, which differs between "
                         "the draft's and the target's positions; use None")


__all__ = [
    "SpecStats",
    "accept_greedy",
    "accept_reject",
    "acceptance_rate",
    "empirical_distribution",
    "expected_speedup",
    "expected_tokens",
    "forward_seconds",
    "markov_speculative",
    "optimal_gamma",
    "pass_seconds",
    "processed_probs",
    "run_costs",
    "sequence_distribution",
    "speculative_generate",
    "target_only_generate",
    "total_variation",
]
