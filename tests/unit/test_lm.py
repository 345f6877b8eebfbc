"""companion.lm: batches, the loop's guarantees (accumulation, exact resume, atomic checkpoints), the cached model."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from companion import lm
from companion.model import GPTConfig, MiniGPT

VOCAB = 64


def toy_data(n: int = 6000, seed: int = 0) -> lm.TokenData:
    """A stream with structure to learn: token t is usually followed by (t * 7 + 3) mod V."""
    g = torch.Generator().manual_seed(seed)
    ids = [0]
    for noise in torch.rand(n, generator=g).tolist():
        ids.append((ids[-1] * 7 + 3) % VOCAB if noise < 0.8 else int(noise * 1e4) % VOCAB)
    return lm.TokenData.from_ids(ids, VOCAB, val_frac=0.2)


def small_model(seed: int = 0, **options) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=32, **options))


def cfg(**changes) -> lm.LMTrainConfig:
    base = dict(steps=30, batch_size=8, block=16, peak_lr=3e-3, warmup_steps=3, eval_every=10, eval_tokens=512,
                autocast=None)
    return lm.LMTrainConfig(**{**base, **changes})


def test_batches_are_windows_with_targets_shifted_by_one():
    data = lm.TokenData(torch.arange(100), torch.arange(50), vocab_size=100)
    x, y = data.batch(5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
    xv, yv = data.val_windows(8, 1000)
    assert xv.shape == (6, 8) and torch.equal(yv, xv + 1), "consecutive windows cover the stream once"


def test_unigram_loss_is_the_entropy_of_a_uniform_stream():
    ids = torch.arange(40_000) % VOCAB
    data = lm.TokenData.from_ids(ids, VOCAB)
    assert lm.unigram_loss(data) == pytest.approx(math.log(VOCAB), rel=1e-3)


def test_gradient_accumulation_equals_the_large_batch():
    data = toy_data()
    x, y = data.batch(16, 16, torch.Generator().manual_seed(1))
    grads = []
    for micro in (1, 4):
        model = small_model()
        loss = lm.accumulate_gradients(model, x, y, micro)
        grads.append((loss, [p.grad.clone() for p in model.parameters()]))
    (loss_1, g_1), (loss_4, g_4) = grads
    assert loss_1 == pytest.approx(loss_4, rel=1e-5)
    for a, b in zip(g_1, g_4):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_training_with_accumulation_follows_the_same_path():
    runs = [lm.train_lm(small_model(), toy_data(), cfg(steps=15, grad_accum=k), progress=False) for k in (1, 4)]
    assert runs[0].train_loss == pytest.approx(runs[1].train_loss, rel=1e-3)


def test_training_learns_beyond_the_unigram_baseline():
    data = toy_data()
    history = lm.train_lm(small_model(), data, cfg(steps=120, eval_every=40), progress=False)
    assert history.eval_step == [40, 80, 120]
    assert history.val_loss[-1] < 0.7 * lm.unigram_loss(data)
    assert history.lr[0] < history.lr[1] < history.lr[2] == pytest.approx(3e-3), "linear warmup to the peak"
    assert history.lr[-1] < 0.2 * history.lr[2], "then cosine decay"


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data, c = toy_data(), cfg(steps=24, eval_every=8)
    straight = small_model()
    full = lm.train_lm(straight, data, c, progress=False)

    ckpt = tmp_path / "run.pt"
    interrupted = small_model()
    lm.train_lm(interrupted, data, c, checkpoint=ckpt, stop_after=10, progress=False)
    resumed_model = small_model(seed=123)  # different weights: everything must come from the checkpoint
    resumed = lm.train_lm(resumed_model, data, c, checkpoint=ckpt, resume=True, progress=False)

    assert resumed.train_loss == full.train_loss and resumed.val_loss == full.val_loss
    for a, b in zip(straight.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_resume_with_dropout_is_exact_too(tmp_path):
    data, c = toy_data(), cfg(steps=12, eval_every=6)
    full = lm.train_lm(small_model(dropout=0.2), data, c, progress=False)
    ckpt = tmp_path / "run.pt"
    lm.train_lm(small_model(dropout=0.2), data, c, checkpoint=ckpt, stop_after=5, progress=False)
    resumed = lm.train_lm(small_model(dropout=0.2), data, c, checkpoint=ckpt, resume=True, progress=False)
    assert resumed.train_loss == full.train_loss


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = lm.save_checkpoint(tmp_path / "ck.pt", {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        lm.save_checkpoint(path, {"step": 2})
    assert torch.load(path)["step"] == 1, "a failed save leaves the previous checkpoint whole"


def test_bf16_autocast_trains_close_to_fp32():
    data = toy_data()
    fp32 = lm.train_lm(small_model(), data, cfg(steps=40), progress=False)
    bf16 = lm.train_lm(small_model(), data, cfg(steps=40, autocast="bf16"), progress=False)
    assert bf16.val_loss[-1] == pytest.approx(fp32.val_loss[-1], rel=0.05)


def test_weight_decay_only_on_matrices():
    model = small_model()
    groups = lm.param_groups(model, 0.1)
    decayed = {id(p) for p in groups[0]["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() >= 2), name
    assert groups[1]["weight_decay"] == 0.0


def tiny_recipe(smoke: bool) -> lm.Recipe:
    return lm.Recipe(prose_chars=30_000, code_chars=10_000, vocab_size=300, model=dict(block_size=32, n_layer=1, n_head=2, n_embd=32),
                     train=dict(steps=60, batch_size=16, block=32, peak_lr=1e-2, warmup_steps=5, eval_every=30,
                                eval_tokens=2048))


def test_pretrained_is_cached_and_reproducible(tmp_path, monkeypatch):
    assert lm.recipe(True).key() != lm.recipe(False).key()
    monkeypatch.setattr(lm, "recipe", tiny_recipe)
    first = lm.pretrained(smoke=True, cache=tmp_path, progress=False)
    assert first.path.is_file() and first.path.parent == tmp_path / "models"
    assert first.history.val_loss[-1] < lm.unigram_loss(first.data), "better than token frequencies alone"
    assert first.history.samples and first.history.samples[0][1].startswith(first.recipe.prompt)
    again = lm.pretrained(smoke=True, cache=tmp_path, progress=False)  # loaded, not retrained
    assert again.history.train_loss == first.history.train_loss
    retrained = lm.pretrained(smoke=True, cache=tmp_path / "elsewhere", progress=False)
    for a, b in zip(first.model.parameters(), retrained.model.parameters()):
        assert torch.equal(a, b), "the same recipe trains the same weights"


def test_corpus_tokens_load_from_the_cache_equal_to_a_fresh_encoding(tmp_path):
    rcp = tiny_recipe(True)
    tok, data = lm.corpus_tokens(rcp, cache=tmp_path)
    assert (tmp_path / "models" / f"corpus-{rcp.key()}.pt").is_file()
    tok2, data2 = lm.corpus_tokens(rcp, cache=tmp_path)  # loaded
    assert tok2.merges == tok.merges and tok2.pattern == tok.pattern
    assert torch.equal(data2.train, data.train) and torch.equal(data2.val, data.val)
    text = "def f(x):\n    return x  # the tokenizer round-trips"
    assert tok2.encode_ordinary(text) == tok.encode_ordinary(text) and tok2.decode(tok2.encode_ordinary(text)) == text
    torch.save({"merges": []}, tmp_path / "models" / f"corpus-{rcp.key()}.pt")  # a stale or foreign file
    with pytest.raises(ValueError, match="is not a corpus cache"):
        lm.corpus_tokens(rcp, cache=tmp_path)


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="grad_accum"):
        lm.LMTrainConfig(batch_size=10, grad_accum=3)
    with pytest.raises(ValueError, match="warmup_steps"):
        lm.LMTrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="autocast"):
        lm.LMTrainConfig(autocast="fp16")
    with pytest.raises(ValueError, match="train must be a 1-D long"):
        lm.TokenData(torch.zeros(5), torch.zeros(5, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="vocab_size=3"):
        lm.TokenData(torch.tensor([0, 5]), torch.tensor([0]), 3)
    with pytest.raises(ValueError, match="fewer than block"):
        lm.TokenData(torch.arange(5), torch.arange(5), 10).batch(2, 8, torch.Generator())
    with pytest.raises(FileNotFoundError, match="resume"):
        lm.train_lm(small_model(), toy_data(), cfg(), checkpoint=tmp_path / "none.pt", resume=True)
    ckpt = tmp_path / "c.pt"
    lm.train_lm(small_model(), toy_data(), cfg(steps=4, warmup_steps=1), checkpoint=ckpt, stop_after=2, progress=False)
    with pytest.raises(ValueError, match="different LMTrainConfig"):
        lm.train_lm(small_model(), toy_data(), cfg(steps=5, warmup_steps=1), checkpoint=ckpt, resume=True)


def test_config_roundtrips_through_a_checkpoint(tmp_path):
    c = cfg(steps=3, warmup_steps=1)
    ckpt = tmp_path / "c.pt"
    lm.train_lm(small_model(), toy_data(), c, checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=False)
    assert state["config"] == asdict(c) and state["step"] == 3


def test_more_bad_inputs_are_named():
    data = toy_data()
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        data.batch(2, 8, torch.Generator(), split="test")
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1"):
        lm.accumulate_gradients(small_model(), *data.batch(4, 8, torch.Generator()), 0)
    with pytest.raises(ValueError, match="x and y must both be"):
        lm.accumulate_gradients(small_model(), torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, 7, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="stop_after"):
        lm.train_lm(small_model(), data, cfg(), stop_after=0)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        lm.TokenData.from_ids([], 10)
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        lm.TokenData.from_ids([1, 2, 3], 0)
