"""companion.specdec: greedy output equals the target's, sampled output is distributed as the target's, the formulas hold."""

from __future__ import annotations

import math

import pytest
import torch

from companion import kvcache, lm, specdec
from companion.decoding import SamplingConfig
from companion.model import GPTConfig, MiniGPT


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(vocab: int = 50, n_layer: int = 2, n_embd: int = 32, seed: int = 0, scale: float = 1.0,
         block: int = 64) -> MiniGPT:
    """A random MiniGPT; ``scale`` multiplies the tied embedding so its distributions are peakier."""
    torch.manual_seed(seed)
    model = MiniGPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=2, n_embd=n_embd)).eval()
    with torch.no_grad():
        model.wte.weight.mul_(scale)
    return model


# ---------------------------------------------------------------------------------------------
# The theory
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1, 3, 8])
def test_expected_tokens_limits_and_series(gamma):
    assert specdec.expected_tokens(0.0, gamma) == 1.0
    assert specdec.expected_tokens(1.0, gamma) == gamma + 1
    assert specdec.expected_tokens(1 - 1e-9, gamma) == pytest.approx(gamma + 1, rel=1e-6)
    for alpha in (0.2, 0.6, 0.9):
        assert specdec.expected_tokens(alpha, gamma) == pytest.approx(sum(alpha**i for i in range(gamma + 1)))


@pytest.mark.parametrize("alpha,gamma", [(0.3, 2), (0.7, 4), (0.9, 6)])
def test_expected_tokens_matches_simulated_bernoulli_acceptances(alpha, gamma):
    g = torch.Generator().manual_seed(0)
    accept = torch.rand(200_000, gamma, generator=g) < alpha  # each draft token kept with probability α
    tokens = accept.long().cumprod(-1).sum(-1) + 1  # kept before the first rejection, plus the target's own token
    assert tokens.double().mean().item() == pytest.approx(specdec.expected_tokens(alpha, gamma), rel=0.01)


def test_speedup_and_optimal_gamma():
    assert specdec.expected_speedup(0.8, 4, 0.0) == specdec.expected_tokens(0.8, 4)  # a free draft
    assert specdec.expected_speedup(0.0, 4, 0.1) < 1  # nothing accepted: the draft's time is lost
    for alpha, c in ((0.6, 0.05), (0.8, 0.05), (0.9, 0.02), (0.5, 0.5)):
        best = specdec.optimal_gamma(alpha, c)
        speedups = [specdec.expected_speedup(alpha, g, c) for g in range(1, 65)]
        assert speedups[best - 1] == max(speedups)
    assert specdec.optimal_gamma(0.9, 0.02) > specdec.optimal_gamma(0.6, 0.02) > 1  # better drafts: longer guesses
    assert specdec.optimal_gamma(0.6, 0.02) >= specdec.optimal_gamma(0.6, 0.2)  # dearer drafts: shorter guesses


def test_acceptance_rate_is_one_minus_total_variation_and_the_acceptance_probability():
    g = torch.Generator().manual_seed(1)
    p, q = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), -1), \
        torch.softmax(2 * torch.randn(6, generator=g, dtype=torch.float64), -1)
    alpha = specdec.acceptance_rate(p, q).item()
    assert alpha == pytest.approx(1 - specdec.total_variation(p, q))
    n = 200_000
    draft = torch.multinomial(q, n, replacement=True, generator=g)[:, None]  # (N, 1): γ = 1
    accepted, _ = specdec.accept_reject(p.expand(n, 2, 6), q.expand(n, 1, 6), draft, g)
    assert accepted.double().mean().item() == pytest.approx(alpha, abs=0.005)


def test_accept_greedy():
    logits = torch.tensor([[[0.0, 5, 0], [9, 0, 0], [0, 0, 1]]])  # argmaxes 1, 0, 2
    assert [int(t) for t in specdec.accept_greedy(logits, torch.tensor([[1, 0]]))] == [2, 2]  # all kept, bonus 2
    assert [int(t) for t in specdec.accept_greedy(logits, torch.tensor([[1, 2]]))] == [1, 0]  # second rejected
    assert [int(t) for t in specdec.accept_greedy(logits, torch.tensor([[0, 0]]))] == [0, 1]


# ---------------------------------------------------------------------------------------------
# Lossless: exact distribution on toy models
# ---------------------------------------------------------------------------------------------


def chain_distribution(table: torch.Tensor, start: int, n_new: int) -> torch.Tensor:
    """Exact probability of every n_new-token continuation of a Markov chain: (V,) * n_new."""
    dist = table[start]
    for _ in range(n_new - 1):
        dist = dist[..., None] * table[torch.arange(table.shape[0])].view((1,) * (dist.dim() - 1) + table.shape)
    return dist


def toy_tables(vocab: int = 4):
    g = torch.Generator().manual_seed(3)
    target = torch.softmax(1.5 * torch.randn(vocab, vocab, generator=g, dtype=torch.float64), -1)
    draft = torch.softmax(1.5 * torch.randn(vocab, vocab, generator=g, dtype=torch.float64), -1)
    return target, draft


@pytest.mark.parametrize("gamma", [1, 3])
def test_speculative_sampling_is_distributed_as_the_target(gamma):
    target, draft = toy_tables()
    n, n_new = 200_000, 3
    exact = chain_distribution(target, 0, n_new)
    assert specdec.total_variation(exact, chain_distribution(draft, 0, n_new)) > 0.2  # the draft alone is far off
    samples = specdec.markov_speculative(target, draft, torch.zeros(n, dtype=torch.long), n_new, gamma,
                                         torch.Generator().manual_seed(gamma))
    assert specdec.total_variation(specdec.empirical_distribution(samples, 4), exact) <= 0.01


def test_the_tv_test_catches_a_wrong_rejection_rule(monkeypatch):
    """Resampling from p instead of max(0, p − q) after a rejection double-counts the overlap: the test must see it."""
    target, draft = toy_tables()
    n = 200_000

    def resample_from_p(p, q, drafted, generator=None):
        b, gamma = drafted.shape
        p_x = p[:, :gamma].gather(-1, drafted[..., None]).squeeze(-1)
        q_x = q.gather(-1, drafted[..., None]).squeeze(-1)
        accepted = torch.rand(b, gamma, generator=generator, dtype=p.dtype) * q_x < p_x
        kept = accepted.long().cumprod(-1).sum(-1)
        return kept, torch.multinomial(p[torch.arange(b), kept], 1, generator=generator).squeeze(-1)

    monkeypatch.setattr(specdec, "accept_reject", resample_from_p)
    samples = specdec.markov_speculative(target, draft, torch.zeros(n, dtype=torch.long), 3, 2,
                                         torch.Generator().manual_seed(0))
    assert specdec.total_variation(specdec.empirical_distribution(samples, 4), chain_distribution(target, 0, 3)) > 0.02


@pytest.mark.parametrize("cfg", [SamplingConfig(), SamplingConfig(temperature=0.7, top_k=3, top_p=0.9)])
def test_speculative_generate_end_to_end_matches_the_target_distribution(cfg):
    target, draft = tiny(vocab=4, seed=0, scale=3.0), tiny(vocab=4, n_layer=1, seed=5, scale=3.0)
    prompt = torch.tensor([[1, 2]])
    exact = specdec.sequence_distribution(target, prompt, 2, cfg)
    assert exact.sum().item() == pytest.approx(1.0)
    draft_alone = specdec.sequence_distribution(draft, prompt, 2, cfg)
    assert specdec.total_variation(exact, draft_alone) > 0.2  # sampling the draft alone fails the test below
    g = torch.Generator().manual_seed(0)
    runs = [specdec.speculative_generate(target, draft, prompt, 2, 2, cfg, g) for _ in range(600)]
    samples = torch.cat([ids[:, 2:] for ids, _ in runs])
    assert specdec.total_variation(specdec.empirical_distribution(samples, 4), exact) < 0.1
    assert any(s.accepted[0] < s.drafted[0] for _, s in runs) and any(s.accepted[0] > 0 for _, s in runs)


# ---------------------------------------------------------------------------------------------
# Lossless: greedy, token for token; the bookkeeping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1, 2, 4, 7])
@pytest.mark.parametrize("prompt_len", [1, 5])
def test_greedy_speculative_equals_target_greedy(gamma, prompt_len):
    target, draft = tiny(seed=0), tiny(n_layer=1, n_embd=16, seed=1)  # a different random model: rejections
    prompt = torch.randint(0, 50, (1, prompt_len), generator=torch.Generator().manual_seed(prompt_len))
    greedy = SamplingConfig(greedy=True)
    ids, stats = specdec.speculative_generate(target, draft, prompt, 40, gamma, greedy)
    assert torch.equal(ids, kvcache.generate(target, prompt, 40, greedy))
    assert stats.new_tokens == 40 and ids.shape == (1, prompt_len + 40)
    assert stats.target_forwards == stats.steps + (prompt_len > 1)
    assert stats.draft_forwards == sum(stats.drafted)
    assert any(a < d for a, d in zip(stats.accepted, stats.drafted)), "a random draft must be rejected sometimes"


def test_a_draft_equal_to_the_target_is_always_accepted():
    target = tiny(seed=0)
    prompt = torch.tensor([[3, 1, 4]])
    ids, stats = specdec.speculative_generate(target, target, prompt, 41, 4, SamplingConfig(), torch.Generator().manual_seed(0))
    assert stats.alpha == pytest.approx(1.0) and stats.tokens_per_step == 5.0  # every full step: γ + 1 tokens
    assert stats.steps == math.ceil(41 / 5)


def test_same_seed_same_tokens():
    target, draft = tiny(seed=0), tiny(n_layer=1, seed=2)
    prompt, cfg = torch.tensor([[7, 8]]), SamplingConfig(temperature=0.9, top_p=0.95)
    a, _ = specdec.speculative_generate(target, draft, prompt, 30, 3, cfg, torch.Generator().manual_seed(11))
    b, _ = specdec.speculative_generate(target, draft, prompt, 30, 3, cfg, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_stats_alpha_estimates_agree_on_many_steps():
    target, draft = tiny(vocab=16, seed=0, scale=8.0), tiny(vocab=16, n_layer=1, seed=0, scale=8.0)
    ids, stats = specdec.speculative_generate(target, draft, torch.tensor([[1]]), 60, 3, SamplingConfig(),
                                              torch.Generator().manual_seed(0))
    assert 0 < stats.alpha < 1 and 0 <= stats.alpha_counted <= 1
    assert len(stats.overlap) == sum(min(a + 1, d) for a, d in zip(stats.accepted, stats.drafted))


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    target, draft = tiny(seed=0), tiny(n_layer=1, seed=1)
    prompt = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="gamma must be an int >= 1"):
        specdec.speculative_generate(target, draft, prompt, 5, 0)
    with pytest.raises(ValueError, match="share a vocabulary"):
        specdec.speculative_generate(target, tiny(vocab=51, seed=1), prompt, 5, 2)
    with pytest.raises(ValueError, match="exceeds the context of 32"):
        specdec.speculative_generate(target, tiny(n_layer=1, block=32), prompt, 30, 2)
    with pytest.raises(ValueError, match="prompt must be a long tensor"):
        specdec.speculative_generate(target, draft, torch.tensor([[1, 2], [3, 4]]), 5, 2)
    for t in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be"):
            specdec.speculative_generate(target, draft, prompt, 5, 2, SamplingConfig(temperature=t))
    with pytest.raises(ValueError, match="repetition_penalty"):
        specdec.speculative_generate(target, draft, prompt, 5, 2, SamplingConfig(repetition_penalty=1.2))
    with pytest.raises(ValueError, match="both be greedy"):
        specdec.speculative_generate(target, draft, prompt, 5, 2, SamplingConfig(greedy=True), draft_cfg=SamplingConfig())
    with pytest.raises(ValueError, match="max_new_tokens"):
        specdec.speculative_generate(target, draft, prompt, -1, 2)
    with pytest.raises(ValueError, match="alpha must be"):
        specdec.expected_tokens(1.5, 3)
    with pytest.raises(ValueError, match="gamma must be"):
        specdec.expected_tokens(0.5, -1)
    with pytest.raises(ValueError, match="c \\(draft cost"):
        specdec.expected_speedup(0.5, 3, -0.1)
    with pytest.raises(ValueError, match="same shape"):
        specdec.acceptance_rate(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="too many to enumerate"):
        specdec.sequence_distribution(target, prompt, 5)
    with pytest.raises(ValueError, match="context must be"):
        specdec.forward_seconds(target, 64, 1)
    with pytest.raises(ValueError, match="context must be"):
        specdec.pass_seconds([target, draft], 60, [1, 5])


def test_pass_seconds_shape_and_order():
    target, draft = tiny(seed=0), tiny(n_layer=1, n_embd=16, seed=1)
    times = specdec.pass_seconds([target, draft], 8, [1, 4], repeat=3)
    assert len(times) == 2 and all(len(row) == 2 and all(t > 0 for t in row) for row in times)
    with pytest.raises(ValueError, match="repeat must be"):
        specdec.pass_seconds([target], 8, [1], repeat=0)
    with pytest.raises(ValueError, match="ns must list"):
        specdec.pass_seconds([target], 8, [])


def test_run_costs_account_for_every_second_and_token():
    import time

    target, draft = tiny(seed=0), tiny(n_layer=1, n_embd=16, seed=1)
    prompt, greedy = torch.tensor([[3, 1, 4]]), SamplingConfig(greedy=True)
    start = time.perf_counter()
    runs = [specdec.speculative_generate(target, draft, prompt, 30, 3, greedy)[1] for _ in range(2)]
    spec_s = time.perf_counter() - start
    assert all(0 < s.draft_seconds and 0 < s.verify_seconds for s in runs)
    assert sum(s.draft_seconds + s.verify_seconds for s in runs) < spec_s, "forwards are part of the wall time"
    base_per_token = 1e-3
    costs = specdec.run_costs(runs, spec_s, base_per_token)
    assert costs["other"] > 0 and 1 <= costs["gamma"] <= 3
    steps = sum(s.steps for s in runs)
    assert costs["tokens_per_step"] == pytest.approx(60 / steps)
    # the identity: the speed-up over a baseline at base_per_token is tokens per step over the step's cost
    speedup = 60 * base_per_token / spec_s
    assert costs["tokens_per_step"] / (costs["gamma"] * costs["c"] + costs["v"] + costs["other"]) == pytest.approx(speedup)
    with pytest.raises(ValueError, match="stats must be a non-empty list of SpecStats"):
        specdec.run_costs([], spec_s, base_per_token)
    with pytest.raises(ValueError, match="spec_seconds must be a number > 0"):
        specdec.run_costs(runs, 0.0, base_per_token)
    with pytest.raises(ValueError, match="base_seconds_per_token must be a number > 0"):
        specdec.run_costs(runs, spec_s, -1.0)
    with pytest.raises(ValueError, match="no target steps"):
        specdec.run_costs([specdec.SpecStats(3)], spec_s, base_per_token)


# ---------------------------------------------------------------------------------------------
# The draft model's recipe and distillation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoke", [True, False])
def test_draft_recipe_shares_the_tokenizer_and_leaves_the_book_model_alone(smoke):
    book, draft = lm.recipe(smoke), lm.draft_recipe(smoke)
    assert book.key() == {True: "ae8115afd189", False: "d127b1a84183"}[smoke]  # cached book models stay valid
    # same corpus and BPE size: the same tokenizer, so the vocabularies match
    assert (draft.prose_chars, draft.code_chars, draft.vocab_size) == (book.prose_chars, book.code_chars, book.vocab_size)
    assert draft.teacher == book.key() and draft.key() != book.key()
    assert draft.model["n_layer"] < book.model["n_layer"] and draft.model["n_embd"] == book.model["n_embd"]


def test_distill_loss_of_a_model_against_itself_is_its_entropy():
    teacher = tiny(seed=0)
    x = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp = torch.log_softmax(teacher(x), -1)
        entropy = -(logp.exp() * logp).sum(-1).mean()
        assert lm.distill_loss(teacher, teacher, x).item() == pytest.approx(entropy.item(), rel=1e-5)
        assert lm.distill_loss(tiny(seed=1), teacher, x).item() > entropy.item()  # cross-entropy ≥ entropy


def test_distillation_pulls_the_student_towards_the_teacher():
    teacher, student = tiny(vocab=20, seed=0, scale=5.0), tiny(vocab=20, n_layer=1, seed=1)
    data = lm.TokenData(torch.randint(0, 20, (3000,), generator=torch.Generator().manual_seed(0)),
                        torch.randint(0, 20, (600,), generator=torch.Generator().manual_seed(1)), 20)
    cfg = lm.LMTrainConfig(steps=15, batch_size=4, block=16, peak_lr=2e-2, warmup_steps=2, eval_every=15,
                           eval_tokens=64, autocast=None)
    x = data.val[:160].view(10, 16)

    def overlap() -> float:
        with torch.no_grad():
            return specdec.acceptance_rate(torch.softmax(teacher(x), -1), torch.softmax(student(x), -1)).mean().item()

    before = overlap()
    history = lm.distill_lm(student, teacher, data, cfg, progress=False)
    assert overlap() > before + 0.1 and history.train_loss[-1] < history.train_loss[0]
