"""companion.decoding against Hugging Face's logits processors, plus the properties decoding must have."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from companion import decoding


def random_logits(seed: int, b: int = 4, v: int = 50) -> torch.Tensor:
    return torch.randn(b, v, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 60), st.floats(0.05, 1.0), st.floats(0.0, 0.9), st.floats(0.2, 3.0))
def test_filters_match_transformers(seed, k, p, min_p, temperature):
    logits = random_logits(seed)
    ids = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(seed))
    cases = [
        (decoding.top_k_filter(logits, k), TopKLogitsWarper(top_k=k)(ids, logits.clone())),
        (decoding.top_p_filter(logits, p), TopPLogitsWarper(top_p=p)(ids, logits.clone())),
        (decoding.min_p_filter(logits, min_p), MinPLogitsWarper(min_p=min_p)(ids, logits.clone())),
        (decoding.apply_temperature(logits, temperature), TemperatureLogitsWarper(temperature)(ids, logits.clone())),
        (decoding.repetition_penalty(logits, ids, 1.3), RepetitionPenaltyLogitsProcessor(1.3)(ids, logits.clone())),
    ]
    for ours, theirs in cases:
        torch.testing.assert_close(ours, theirs)


def markov_model(vocab: int = 5, seed: int = 0):
    """A tiny 'language model' whose next-token logits depend on the last token only."""
    table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed))

    def model(ids: torch.Tensor) -> torch.Tensor:
        return table[ids]  # (B, T) -> (B, T, V)

    return model, table


def test_greedy_is_deterministic_and_beam_one_is_greedy():
    model, _ = markov_model()
    prompt = torch.tensor([[0], [3]])
    cfg = decoding.SamplingConfig(greedy=True)
    first = decoding.generate(model, prompt, 8, cfg)
    assert torch.equal(first, decoding.generate(model, prompt, 8, cfg))
    best, _ = decoding.beam_search(model, torch.tensor([0]), beam_width=1, max_new_tokens=8)
    assert torch.equal(best, first[0])


def test_wide_beam_finds_the_exact_best_sequence():
    model, table = markov_model(vocab=4, seed=1)
    logp = torch.log_softmax(table.double(), dim=-1)
    n = 4
    brute = max(itertools.product(range(4), repeat=n),
                key=lambda seq: sum(logp[a, b] for a, b in zip((2,) + seq[:-1], seq)).item())
    best, score = decoding.beam_search(model, torch.tensor([2]), beam_width=4**n, max_new_tokens=n, length_penalty=0)
    assert best[1:].tolist() == list(brute)
    assert score == pytest.approx(sum(logp[a, b] for a, b in zip((2,) + brute[:-1], brute)).item())


def test_beam_search_length_penalty_and_eos():
    model, table = markov_model(vocab=4, seed=2)
    best, score = decoding.beam_search(model, torch.tensor([1]), beam_width=3, max_new_tokens=6, eos_id=0)
    assert best[0] == 1 and (best[-1] == 0 or len(best) == 7) and math.isfinite(score)


def test_top_p_one_is_plain_sampling_and_entropy_rises_with_temperature():
    model, _ = markov_model(vocab=30)
    prompt = torch.zeros(64, 1, dtype=torch.long)
    plain = decoding.generate(model, prompt, 10, decoding.SamplingConfig(), torch.Generator().manual_seed(0))
    nucleus = decoding.generate(model, prompt, 10, decoding.SamplingConfig(top_p=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(plain, nucleus)
    logits = random_logits(0)
    entropies = [decoding.entropy(decoding.apply_temperature(logits, t)).mean().item() for t in (0.3, 0.7, 1.0, 2.0)]
    assert entropies == sorted(entropies) and entropies[-1] < math.log(50)


def test_eos_rows_stay_finished():
    model, table = markov_model(vocab=3)
    table[:, 2] = 50.0  # token 2 (eos) is almost certain after anything
    out = decoding.generate(model, torch.tensor([[0], [1]]), 5, decoding.SamplingConfig(), eos_id=2,
                            generator=torch.Generator().manual_seed(0))
    assert out.shape[1] == 2 and (out[:, 1] == 2).all(), "stops as soon as every row has finished"


def test_bad_inputs_are_named():
    logits = random_logits(0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        decoding.apply_temperature(logits, 0.0)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        decoding.top_k_filter(logits, 0)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        decoding.top_p_filter(logits, 1.5)
    with pytest.raises(ValueError, match="logits must be a float tensor"):
        decoding.top_k_filter(logits[0], 3)
    with pytest.raises(ValueError, match="previous must be a long tensor"):
        decoding.repetition_penalty(logits, torch.zeros(2, 3, dtype=torch.long), 1.2)
    model, _ = markov_model()
    with pytest.raises(ValueError, match="prompt must be a long tensor"):
        decoding.generate(model, torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="beam_width"):
        decoding.beam_search(model, torch.tensor([0]), beam_width=0, max_new_tokens=3)


def test_model_output_and_eos_id_are_checked():
    model, _ = markov_model()
    with pytest.raises(ValueError, match="model must map ids"):
        decoding.generate(lambda ids: torch.zeros(ids.shape[0], 5), torch.zeros(1, 2, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"eos_id must be a token id in \[0, 5\)"):
        decoding.beam_search(model, torch.tensor([0]), beam_width=2, max_new_tokens=3, eos_id=9)


def test_max_context_lets_generation_run_past_the_block_size():
    from companion.model import GPTConfig, MiniGPT

    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    prompt = torch.randint(0, 30, (2, 5))
    with torch.no_grad():
        with pytest.raises(ValueError, match="exceeds block_size=8"):
            decoding.generate(model, prompt, 10, decoding.SamplingConfig(greedy=True))
        out = decoding.generate(model, prompt, 10, decoding.SamplingConfig(greedy=True), max_context=8)
        assert out.shape == (2, 15)
        expected_last = model(out[:, -9:-1])[:, -1].argmax(-1)  # the last token saw only the 8 before it
    assert torch.equal(out[:, -1], expected_last)
    with pytest.raises(ValueError, match="max_context"):
        decoding.generate(model, prompt, 1, max_context=0)


# --- measuring decoded text -------------------------------------------------------------------


def test_distinct_n_pools_ngrams_across_samples():
    assert decoding.distinct_n([[1, 2, 3], [1, 2, 4]], 1) == pytest.approx(4 / 6)
    assert decoding.distinct_n([[1, 2, 3], [1, 2, 4]], 2) == 0.75
    assert decoding.distinct_n(torch.tensor([[5, 5, 5, 5]]), 2) == pytest.approx(1 / 3)
    assert decoding.distinct_n([[1, 2, 3], [4, 5, 6]], 3) == 1.0, "different samples share nothing"
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        decoding.distinct_n([[1, 2]], 0)
    with pytest.raises(ValueError, match="no sample is at least n=3"):
        decoding.distinct_n([[1, 2], [3]], 3)


def test_repeated_ngram_share_finds_loops():
    assert decoding.repeated_ngram_share([1, 2, 1, 2, 1, 2], 2) == pytest.approx(0.6)
    assert decoding.repeated_ngram_share(torch.arange(10), 3) == 0.0
    loop = [7, 8, 9] * 20
    assert decoding.repeated_ngram_share(loop, 3) == pytest.approx(55 / 58), "only the first 3 trigrams are new"
    with pytest.raises(ValueError, match="fewer than n=4"):
        decoding.repeated_ngram_share([1, 2, 3], 4)
    with pytest.raises(ValueError, match="one sequence"):
        decoding.repeated_ngram_share([[1, 2], [3, 4]], 1)


def test_continuation_nll_equals_cross_entropy_on_the_continuation():
    model, table = markov_model(vocab=6, seed=3)
    ids = torch.randint(0, 6, (3, 9), generator=torch.Generator().manual_seed(0))
    logp = torch.log_softmax(table, dim=-1)
    expected = torch.stack([-logp[row[3:-1], row[4:]].mean() for row in ids])
    torch.testing.assert_close(decoding.continuation_nll(model, ids, start=4), expected)
    with pytest.raises(ValueError, match="start must be an int in"):
        decoding.continuation_nll(model, ids, start=9)


def test_bigram_table_is_a_distribution_and_learns_pairs():
    stream = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3] * 20)
    table = decoding.bigram_table(stream, vocab_size=5, mix=0.9)
    torch.testing.assert_close(table.double().exp().sum(1), torch.ones(5, dtype=torch.float64), atol=1e-6, rtol=0)
    assert table[0].argmax() == 1 and table[0, 1].exp() > 0.9, "1 always follows 0"
    assert torch.isfinite(table).all(), "unseen pairs keep the unigram's share"
    unigram = (torch.bincount(stream, minlength=5) + 1).double()
    # token 4 is never seen, so its row backs off to the unigram entirely
    torch.testing.assert_close(table[4].double().exp(), unigram / unigram.sum(), atol=1e-6, rtol=0)
    seen, unseen = torch.tensor([[0, 1, 2, 0, 1]]), torch.tensor([[0, 2, 1, 0, 2]])
    assert decoding.bigram_nll(table, seen, 1) < decoding.bigram_nll(table, unseen, 1)
    expected = -(table[0, 1] + table[1, 2]) / 2
    torch.testing.assert_close(decoding.bigram_nll(table, torch.tensor([[0, 1, 2]]), 1), expected[None])
    with pytest.raises(ValueError, match="mix must be in"):
        decoding.bigram_table(stream, 5, mix=1.0)
    with pytest.raises(ValueError, match=r"stream ids must lie in \[0, vocab_size=3\)"):
        decoding.bigram_table(stream, 3)


def test_text_metrics_reject_bad_ids():
    table = decoding.bigram_table(torch.tensor([0, 1, 2, 1, 0]), 3)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, V=3\)"):
        decoding.bigram_nll(table, torch.tensor([[0, 1, -1]]), 1)  # a negative id would wrap round silently
    with pytest.raises(ValueError, match="table must be"):
        decoding.bigram_nll(table[0], torch.tensor([[0, 1]]), 1)
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        decoding.bigram_table(torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="samples must be"):
        decoding.distinct_n(torch.rand(2, 3), 1)
    with pytest.raises(ValueError, match="samples must be"):
        decoding.distinct_n([1, 2, 3], 1)
    with pytest.raises(ValueError, match="ids must hold integer"):
        decoding.repeated_ngram_share([0.5, 1.5, 0.5], 1)
    with pytest.raises(ValueError, match="ids must be one sequence"):
        decoding.repeated_ngram_share(torch.zeros(2, 3, dtype=torch.long), 1)
    model, _ = markov_model()
    with pytest.raises(ValueError, match="start must be an int"):
        decoding.continuation_nll(model, torch.zeros(1, 4, dtype=torch.long), 1.5)
