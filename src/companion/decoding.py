"""Decoding: turning next-token logits into text, one token at a time.

A language model gives logits (B, V) for the next token. Decoding is a pipeline over them:

    logits → repetition penalty → temperature → top-k / top-p / min-p filter → softmax → pick

and "pick" is either the argmax (greedy) or a draw from the distribution (sampling). Beam search
instead keeps the ``beam_width`` best partial sequences by total log-probability.

Every filter returns logits with the removed tokens set to −inf, so filters compose, and each is
checked in the tests against the matching Hugging Face ``transformers`` logits processor.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> top_k_filter(logits, 2)
    tensor([[2., 1., -inf, -inf]])

References:
- Fan et al., "Hierarchical Neural Story Generation" (2018): top-k sampling.
- Holtzman et al., "The Curious Case of Neural Text Degeneration" (2020): nucleus (top-p) sampling.
- Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM Outputs" (2024).
- Keskar et al., "CTRL" (2019): the repetition penalty.
- Wu et al., "Google's Neural Machine Translation System" (2016): length-normalized beam scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # ids (B, T) long -> logits (B, T, V)


# ---------------------------------------------------------------------------------------------
# Logit processors: (B, V) -> (B, V)
# ---------------------------------------------------------------------------------------------


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T: T < 1 sharpens the distribution, T > 1 flattens it."""
    _check_logits(logits)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for T → 0), got {temperature!r}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (and any tied with the k-th), set the rest to −inf."""
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probability mass reaches p."""
    _check_logits(logits)
    if not 0 < p <= 1:
        raise ValueError(f"p must be in (0, 1], got {p!r}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more likely tokens
    drop_sorted = mass_before >= p
    drop_sorted[..., :min_keep] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose probability is at least min_p times that of the most likely token."""
    _check_logits(logits)
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p!r}")
    probs = torch.softmax(logits, dim=-1)
    drop = probs < min_p * probs.max(dim=-1, keepdim=True).values
    keep_best = torch.topk(probs, min(min_keep, logits.shape[-1]), dim=-1).indices
    drop = drop.scatter(-1, keep_best, False)
    return logits.masked_fill(drop, float("-inf"))


def repetition_penalty(logits: torch.Tensor, previous: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in ``previous`` (B, T) less likely: positive logits / penalty, negative ones × penalty."""
    _check_logits(logits)
    if not penalty > 0:
        raise ValueError(f"penalty must be > 0 (1 means none), got {penalty!r}")
    if previous.dim() != 2 or previous.shape[0] != logits.shape[0] or previous.dtype != torch.long:
        raise ValueError(f"previous must be a long tensor (B={logits.shape[0]}, T), got {previous.dtype} "
                         f"{tuple(previous.shape)}")
    seen = logits.gather(-1, previous)
    penalized = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, previous, penalized)


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (B, V), got {getattr(logits, 'shape', type(logits))}")


# ---------------------------------------------------------------------------------------------
# Picking the next token, and generating
# ---------------------------------------------------------------------------------------------


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    greedy: bool = False  # argmax instead of sampling; the filters then do not matter


def next_token_logits(logits: torch.Tensor, previous: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The processed logits (B, V) that the next token is drawn from, in the order the module docstring gives."""
    if cfg.repetition_penalty is not None:
        logits = repetition_penalty(logits, previous, cfg.repetition_penalty)
    logits = apply_temperature(logits, cfg.temperature)
    if cfg.top_k is not None:
        logits = top_k_filter(logits, cfg.top_k)
    if cfg.top_p is not None:
        logits = top_p_filter(logits, cfg.top_p)
    if cfg.min_p is not None:
        logits = min_p_filter(logits, cfg.min_p)
    return logits


def pick_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token (B,) from processed logits (B, V): the argmax when greedy, else one draw from the softmax."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


def generate(
    model: ModelFn,
    prompt: torch.Tensor,
    max_new_tokens: int,
    cfg: SamplingConfig = SamplingConfig(),
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
    max_context: int | None = None,
) -> torch.Tensor:
    """Extend prompt (B, T) by up to max_new_tokens tokens; returns (B, T + n). Rows that emitted
    ``eos_id`` keep emitting it, so the batch stays rectangular. ``max_context``: the model sees
    only the last that many tokens (a model's block size), so generation can run past it."""
    if prompt.dim() != 2 or prompt.dtype != torch.long or prompt.shape[1] < 1:
        raise ValueError(f"prompt must be a long tensor (B, T) with T >= 1, got {prompt.dtype} {tuple(prompt.shape)}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if max_context is not None and (isinstance(max_context, bool) or not isinstance(max_context, int) or max_context < 1):
        raise ValueError(f"max_context must be an int >= 1 or None, got {max_context!r}")
    ids = prompt
    done = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        context = ids if max_context is None else ids[:, -max_context:]
        token = pick_next(next_token_logits(_last_logits(model, context, eos_id), ids, cfg), cfg, generator)
        if eos_id is not None:
            token = torch.where(done, torch.full_like(token, eos_id), token)
            done |= token == eos_id
        ids = torch.cat([ids, token[:, None]], dim=1)
        if eos_id is not None and bool(done.all()):
            break
    return ids


def beam_search(
    model: ModelFn,
    prompt: torch.Tensor,
    beam_width: int,
    max_new_tokens: int,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> tuple[torch.Tensor, float]:
    """The best continuation of prompt (T,) and its score, sum of log-probs / (new tokens)^length_penalty.

    Keeps the ``beam_width`` best partial sequences by total log-probability; a sequence that emits
    ``eos_id`` is finished and set aside with its length-normalized score. length_penalty > 0
    favours longer outputs, 0 compares raw log-probabilities.
    """
    if prompt.dim() != 1 or prompt.dtype != torch.long or len(prompt) < 1:
        raise ValueError(f"prompt must be a 1-D long tensor of token ids, got {prompt.dtype} {tuple(prompt.shape)}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an int >= 1, got {beam_width!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    beams = prompt[None, :]  # (n_beams, T)
    scores = torch.zeros(1, dtype=torch.float64)  # total log-prob of each beam
    finished: list[tuple[float, torch.Tensor]] = []
    for step in range(1, max_new_tokens + 1):
        logprobs = torch.log_softmax(_last_logits(model, beams, eos_id).double(), dim=-1)  # (n_beams, V)
        vocab = logprobs.shape[-1]
        candidates = (scores[:, None] + logprobs).flatten()  # (n_beams * V,)
        top = torch.topk(candidates, min(2 * beam_width, len(candidates)))  # spares in case some end
        next_beams, next_scores = [], []
        for score, flat in zip(top.values.tolist(), top.indices.tolist()):
            seq = torch.cat([beams[flat // vocab], torch.tensor([flat % vocab])])
            if eos_id is not None and flat % vocab == eos_id:
                finished.append((score / step**length_penalty, seq))
            elif len(next_beams) < beam_width:
                next_beams.append(seq)
                next_scores.append(score)
            if len(next_beams) == beam_width:
                break
        if not next_beams:
            break
        beams, scores = torch.stack(next_beams), torch.tensor(next_scores, dtype=torch.float64)
    n_new = beams.shape[1] - len(prompt)
    if n_new:
        finished += [(s / n_new**length_penalty, b) for s, b in zip(scores.tolist(), beams)]
    best_score, best = max(finished, key=lambda pair: pair[0])
    return best, best_score


def _last_logits(model: ModelFn, ids: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """The model's logits for the next token, (B, V), after checking what the model returned."""
    out = model(ids)
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != ids.shape:
        raise ValueError(f"model must map ids (B, T) = {tuple(ids.shape)} to logits (B, T, V), "
                         f"got {getattr(out, 'shape', type(out))}")
    if eos_id is not None and not 0 <= eos_id < out.shape[-1]:
        raise ValueError(f"eos_id must be a token id in [0, {out.shape[-1]}), got {eos_id}")
    return out[:, -1, :]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) per row: (B, V) -> (B,). −inf logits count as probability 0."""
    _check_logits(logits)
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


# ---------------------------------------------------------------------------------------------
# Measuring decoded text: diversity, repetition, and how likely a model finds it
# ---------------------------------------------------------------------------------------------


def _token_rows(value, name: str) -> list[list[int]]:
    """A (B, T) integer tensor or a list of integer sequences, as lists; anything else is a clear error."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 2 or value.is_floating_point() or value.is_complex():
            raise ValueError(f"{name} must be a (B, T) integer tensor or a list of id sequences, "
                             f"got {value.dtype} {tuple(value.shape)}")
        return value.tolist()
    if isinstance(value, (str, bytes)) or not all(isinstance(row, (list, tuple)) for row in value):
        raise ValueError(f"{name} must be a (B, T) integer tensor or a list of id sequences")
    rows = [list(row) for row in value]
    if not all(isinstance(t, int) and not isinstance(t, bool) for row in rows for t in row):
        raise ValueError(f"{name} must hold integer token ids")
    return rows


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")


def distinct_n(samples: list[list[int]] | torch.Tensor, n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams over all n-grams, pooled across ``samples``.

    1.0 means no n-gram occurs twice anywhere in the set; near 0, the samples repeat one another
    (or themselves). Pool the continuations of one prompt to measure how different they are.

        >>> distinct_n([[1, 2, 3], [1, 2, 4]], 2)   # (1,2) (2,3) (1,2) (2,4): 3 unique of 4
        0.75
    """
    _check_n(n)
    rows = _token_rows(samples, "samples")
    grams = [tuple(row[i:i + n]) for row in rows for i in range(len(row) - n + 1)]
    if not grams:
        raise ValueError(f"no sample is at least n={n} tokens long, so there are no n-grams to count")
    return len(set(grams)) / len(grams)


def repeated_ngram_share(ids: list[int] | torch.Tensor, n: int) -> float:
    """Share of a sequence's n-grams that already occurred earlier in the same sequence.

    The signature of a decoding loop: a model stuck repeating a phrase scores near 1, fresh text near 0.

        >>> repeated_ngram_share([1, 2, 1, 2, 1, 2], 2)   # (1,2) (2,1) then 3 repeats of those
        0.6
    """
    _check_n(n)
    if isinstance(ids, torch.Tensor) and ids.dim() != 1:
        raise ValueError(f"ids must be one sequence of token ids; call this per row for a batch, got {tuple(ids.shape)}")
    if not isinstance(ids, torch.Tensor) and any(isinstance(t, (list, tuple)) for t in ids):
        raise ValueError("ids must be one sequence of token ids; call this per row for a batch")
    (row,) = _token_rows(ids[None] if isinstance(ids, torch.Tensor) else [ids], "ids")
    grams = [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]
    if not grams:
        raise ValueError(f"the sequence has {len(row)} tokens, fewer than n={n}")
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


@torch.no_grad()
def continuation_nll(model: ModelFn, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Mean negative log-likelihood (nats/token) the model gives ids[:, start:], each token given all before it.

    ids: (B, T) long, the prompt and its continuation; start: where the continuation begins (>= 1).
    Returns (B,). One forward pass, so T must fit in the model's context.
    """
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise ValueError(f"ids must be a long tensor (B, T), got {ids.dtype} {tuple(ids.shape)}")
    if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start < ids.shape[1]:
        raise ValueError(f"start must be an int in [1, T={ids.shape[1]}) so that there is a prompt and a "
                         f"continuation, got {start!r}")
    out = model(ids[:, :-1])
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != ids[:, :-1].shape:
        raise ValueError(f"model must map ids (B, T) to logits (B, T, V), got {getattr(out, 'shape', type(out))}")
    if int(ids.min()) < 0 or int(ids.max()) >= out.shape[-1]:
        raise ValueError(f"ids must lie in [0, V={out.shape[-1]}), got [{int(ids.min())}, {int(ids.max())}]")
    logp = torch.log_softmax(out.float(), dim=-1)  # (B, T-1, V): position t predicts ids[:, t+1]
    picked = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
    return -picked[:, start - 1:].mean(dim=1)


def bigram_table(stream: torch.Tensor, vocab_size: int, mix: float = 0.9) -> torch.Tensor:
    """Log-probabilities (V, V) of an interpolated bigram model fit on a token stream (N,).

    log p(b | a) with p(b | a) = mix · count(a, b) / count(a) + (1 − mix) · p(b), where p(b) is the
    add-one-smoothed unigram, so every pair has a finite score. A model of a different family from
    a transformer, useful as an outside judge of decoded text (it only sees pairs of tokens).
    """
    if stream.dim() != 1 or stream.dtype != torch.long or len(stream) < 2:
        raise ValueError(f"stream must be a 1-D long tensor of at least 2 token ids, "
                         f"got {stream.dtype} {tuple(stream.shape)}")
    if not 0 <= mix < 1:
        raise ValueError(f"mix must be in [0, 1), got {mix}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
    if int(stream.max()) >= vocab_size or int(stream.min()) < 0:
        raise ValueError(f"stream ids must lie in [0, vocab_size={vocab_size})")
    unigram = torch.bincount(stream, minlength=vocab_size).double() + 1
    unigram /= unigram.sum()
    pairs = torch.bincount(stream[:-1] * vocab_size + stream[1:], minlength=vocab_size**2).double()
    pairs = pairs.view(vocab_size, vocab_size)  # pairs[a, b]: how often b follows a
    rows = pairs.sum(1, keepdim=True)
    conditional = torch.where(rows > 0, pairs / rows.clamp(min=1), unigram)  # an unseen left token backs off fully
    return (mix * conditional + (1 - mix) * unigram).log().float()


def bigram_nll(table: torch.Tensor, ids: torch.Tensor, start: int) -> torch.Tensor:
    """Mean −log p(ids[:, t] | ids[:, t−1]) over t >= start under ``bigram_table``'s table: (B, T) -> (B,)."""
    if table.dim() != 2 or table.shape[0] != table.shape[1]:
        raise ValueError(f"table must be (V, V) from bigram_table, got {tuple(table.shape)}")
    if ids.dim() != 2 or ids.dtype != torch.long or ids.shape[0] < 1:
        raise ValueError(f"ids must be a long tensor (B, T) with B >= 1, got {ids.dtype} {tuple(ids.shape)}")
    if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start < ids.shape[1]:
        raise ValueError(f"start must be an int in [1, T={ids.shape[1]}), got {start!r}")
    if int(ids.min()) < 0 or int(ids.max()) >= table.shape[0]:
        raise ValueError(f"ids must lie in [0, V={table.shape[0]}), got [{int(ids.min())}, {int(ids.max())}]")
    return -table[ids[:, start - 1:-1], ids[:, start:]].mean(dim=1)
