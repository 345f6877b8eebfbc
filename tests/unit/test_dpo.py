"""companion.dpo: sequence log-probs, Bradley–Terry, the DPO loss (formula, log 2 at init, β), KL, and trl's DPO."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from companion import dpo, sft
from companion.model import GPTConfig, MiniGPT

V = 40


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=V, block_size=24, n_layer=1, n_head=2, n_embd=16))


def pairs(n: int = 6, seed: int = 0, length: int = 16) -> dpo.PreferenceBatch:
    g = torch.Generator().manual_seed(seed)
    chosen, rejected = [], []
    for _ in range(n):
        prompt = torch.randint(0, V, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
        body = torch.randint(0, V, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
        chosen.append(sft.example_tokens(prompt, body + [7, 8, 9]))
        rejected.append(sft.example_tokens(prompt, body + [10]))
    return dpo.PreferenceBatch(*sft.pad(chosen, length), *sft.pad(rejected, length))


def test_sequence_logprob_is_the_hand_sum_over_response_tokens():
    model = tiny_model()
    b = pairs()
    got = dpo.sequence_logprob(model, b.chosen_ids, b.chosen_labels)
    logp = torch.log_softmax(model(b.chosen_ids), -1)
    for row in range(len(b)):
        hand = sum(logp[row, t, b.chosen_labels[row, t]] for t in range(b.chosen_ids.shape[1])
                   if b.chosen_labels[row, t] != -100)
        torch.testing.assert_close(got[row], hand)
    # padding and prompt tokens do not count: changing them after the response changes nothing
    ids = b.chosen_ids.clone()
    tail = dpo.last_positions(b.chosen_labels)
    ids[0, tail[0] + 1:] = 3
    torch.testing.assert_close(dpo.sequence_logprob(model, ids, b.chosen_labels)[0], got[0])


def test_dpo_loss_equals_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(32, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    for beta in (0.01, 0.1, 0.5, 2.0):
        out = dpo.dpo_loss(pc, pr, rc, rr, beta)
        direct = -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()
        torch.testing.assert_close(out.loss, direct)
        torch.testing.assert_close(out.chosen_reward, beta * (pc - rc))
        torch.testing.assert_close(out.rejected_reward, beta * (pr - rr))
        assert out.accuracy == float(((pc - rc) > (pr - rr)).double().mean())


def test_beta_scales_the_implicit_rewards_and_the_margin():
    g = torch.Generator().manual_seed(1)
    pc, pr, rc, rr = (torch.randn(16, generator=g, dtype=torch.float64) for _ in range(4))
    a, b = dpo.dpo_loss(pc, pr, rc, rr, 0.1), dpo.dpo_loss(pc, pr, rc, rr, 0.3)
    torch.testing.assert_close(b.chosen_reward, 3 * a.chosen_reward)
    # β and the log-ratios enter only as their product: scaling log-probs by c is β·c
    torch.testing.assert_close(dpo.dpo_loss(2 * pc, 2 * pr, 2 * rc, 2 * rr, 0.1).loss, dpo.dpo_loss(pc, pr, rc, rr, 0.2).loss)
    # a pair already ranked right costs less at a larger β, a pair ranked wrong costs more
    up = torch.tensor([1.0], dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    assert dpo.dpo_loss(up, zero, zero, zero, 1.0).loss < dpo.dpo_loss(up, zero, zero, zero, 0.1).loss
    assert dpo.dpo_loss(zero, up, zero, zero, 1.0).loss > dpo.dpo_loss(zero, up, zero, zero, 0.1).loss


def test_at_initialization_the_loss_is_log_2_and_the_gradient_moves_chosen_up_rejected_down():
    policy, ref = tiny_model(), tiny_model()
    b = pairs()
    beta, n = 0.1, len(b)
    pc = dpo.sequence_logprob(policy, b.chosen_ids, b.chosen_labels)
    pr = dpo.sequence_logprob(policy, b.rejected_ids, b.rejected_labels)
    with torch.no_grad():
        rc = dpo.sequence_logprob(ref, b.chosen_ids, b.chosen_labels)
        rr = dpo.sequence_logprob(ref, b.rejected_ids, b.rejected_labels)
    pc_leaf, pr_leaf = pc.detach().requires_grad_(True), pr.detach().requires_grad_(True)
    out = dpo.dpo_loss(pc_leaf, pr_leaf, rc, rr, beta)
    assert abs(out.loss.item() - math.log(2)) < 1e-6
    out.loss.backward()
    torch.testing.assert_close(pc_leaf.grad, torch.full((n,), -beta / (2 * n)))  # −β σ(0) / N
    torch.testing.assert_close(pr_leaf.grad, torch.full((n,), beta / (2 * n)))
    # one small gradient step on the model's weights raises log π(y_w) and lowers log π(y_l)
    dpo.dpo_loss(pc, pr, rc, rr, beta).loss.backward()
    with torch.no_grad():
        for p in policy.parameters():
            p -= 1.0 * p.grad
        assert dpo.sequence_logprob(policy, b.chosen_ids, b.chosen_labels).sum() > pc.sum()
        assert dpo.sequence_logprob(policy, b.rejected_ids, b.rejected_labels).sum() < pr.sum()


def test_bradley_terry_is_bce_with_logits_on_the_reward_difference():
    g = torch.Generator().manual_seed(2)
    rc, rr = torch.randn(64, generator=g), torch.randn(64, generator=g)
    torch.testing.assert_close(dpo.bradley_terry_loss(rc, rr),
                               F.binary_cross_entropy_with_logits(rc - rr, torch.ones(64)))
    assert abs(dpo.bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() - math.log(2)) < 1e-7


def test_token_kl_is_zero_against_itself_and_matches_kl_div():
    p, q = tiny_model(0), tiny_model(1)
    b = pairs()
    assert dpo.token_kl(p, p, b.chosen_ids, b.chosen_labels) == pytest.approx(0.0, abs=1e-7)
    lp, lq = torch.log_softmax(p(b.chosen_ids), -1), torch.log_softmax(q(b.chosen_ids), -1)
    kl = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)  # KL(p ‖ q) per position
    mask = b.chosen_labels != -100
    assert dpo.token_kl(p, q, b.chosen_ids, b.chosen_labels, batch_size=2) == pytest.approx(kl[mask].mean().item(),
                                                                                           rel=1e-5)


def test_reward_model_reads_the_last_response_token_and_learns_the_preference():
    lm = tiny_model()
    rm = dpo.RewardModel(lm)
    b = pairs(8)
    assert torch.all(rm(b.chosen_ids, b.chosen_labels) == 0), "the head starts at zero"
    h = dpo.train_reward_model(rm, b, dpo.PrefConfig(steps=12, batch_size=8, peak_lr=3e-2, warmup_steps=1),
                               progress=False)
    assert h.loss[-1] < 0.2 < math.log(2) - 1e-3 < h.loss[0] + 1e-3
    assert dpo.reward_accuracy(rm, b) == 1.0
    # padding after the response does not change a reward; the language model itself was copied, not trained
    ids = b.chosen_ids.clone()
    ids[0, dpo.last_positions(b.chosen_labels)[0] + 1:] = 5
    with torch.no_grad():
        torch.testing.assert_close(rm(ids, b.chosen_labels)[0], rm(b.chosen_ids, b.chosen_labels)[0])
    assert torch.equal(lm.wte.weight, tiny_model().wte.weight)


def test_train_dpo_prefers_the_chosen_answers_and_tracks_the_kl():
    ref = tiny_model()
    policy = tiny_model()
    b = pairs(8)
    h = dpo.train_dpo(policy, ref, b, dpo.PrefConfig(steps=20, batch_size=8, peak_lr=5e-3, beta=0.5, eval_every=10),
                      kl_rows=(b.chosen_ids, b.chosen_labels), progress=False)
    assert abs(h.loss[0] - math.log(2)) < 1e-6 and h.loss[-1] < 0.3
    assert h.eval_step == [0, 10, 20] and h.kl[0] == pytest.approx(0, abs=1e-7) and h.kl[-1] > h.kl[0]
    assert h.accuracy[-1] == 1.0


def test_sign_off_pairs_and_encoding():
    ex = [sft.Example("Q: a?\nA:", " It is a.\n", "t", "section")]
    assert dpo.sign_off_pairs(ex, " Bye.") == [("Q: a?\nA:", " It is a. Bye.\n", " It is a.\n")]

    class Tok:
        def encode_ordinary(self, text):
            return [ord(c) % V for c in text]

    batch = dpo.encode_preferences(Tok(), dpo.sign_off_pairs(ex, " Bye."), 24)
    assert len(batch) == 1 and batch.chosen_ids.shape == (1, 24)
    assert int((batch.chosen_labels != -100).sum()) == len(" It is a. Bye.\n")
    assert int((batch.rejected_labels != -100).sum()) == len(" It is a.\n")
    with pytest.raises(ValueError, match="fits"):
        dpo.encode_preferences(Tok(), dpo.sign_off_pairs(ex, " Bye."), 8)


def test_bad_inputs_raise_clear_errors():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss(x, x, x, x, 0.0)
    with pytest.raises(ValueError, match="beta"):
        dpo.dpo_loss(x, x, x, x, float("inf"))
    with pytest.raises(ValueError, match="one shape"):
        dpo.dpo_loss(x, x, x, torch.zeros(4), 0.1)
    with pytest.raises(ValueError, match="same shape"):
        dpo.bradley_terry_loss(x, torch.zeros(2))
    with pytest.raises(ValueError, match="sign_off"):
        dpo.sign_off_pairs([], "bye\n")
    with pytest.raises(ValueError, match="empty"):
        dpo.sign_off_pairs([sft.Example("Q: a?\nA:", "\n", "t", "section")])
    with pytest.raises(ValueError, match="no labelled position"):
        dpo.last_positions(torch.full((1, 4), -100))
    with pytest.raises(ValueError, match="long tensors"):
        dpo.sequence_logprob(tiny_model(), torch.zeros(1, 4), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        dpo.PrefConfig(beta=0)


def test_dpo_loss_matches_trl():
    """trl 1.16's DPOTrainer loss on the same model and pairs: its own forward, reduction and sigmoid loss."""
    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    from companion.model import to_hf_gpt2

    policy, ref = tiny_model(0), tiny_model(1)
    b = pairs(4, length=16)
    beta = 0.2
    with torch.no_grad():
        ref_c = dpo.sequence_logprob(ref, b.chosen_ids, b.chosen_labels)
        ref_r = dpo.sequence_logprob(ref, b.rejected_ids, b.rejected_labels)
        ours = dpo.dpo_loss(dpo.sequence_logprob(policy, b.chosen_ids, b.chosen_labels),
                            dpo.sequence_logprob(policy, b.rejected_ids, b.rejected_labels), ref_c, ref_r, beta)
    hf = to_hf_gpt2(policy)
    add_fused_lm_head(hf, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    ids = torch.cat([b.chosen_ids, b.rejected_ids])
    labels = torch.cat([b.chosen_labels, b.rejected_labels])
    completion = torch.zeros_like(ids)
    completion[:, 1:] = (labels[:, :-1] != -100).long()  # trl marks the response tokens themselves
    trainer = SimpleNamespace(
        model=hf, accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda t: t,
                                    gather=lambda t: t),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": completion,
              "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    hf.eval()
    with torch.no_grad():
        theirs = DPOTrainer._compute_loss(trainer, hf, inputs, return_outputs=False)
    assert abs(theirs.item() - ours.loss.item()) < 1e-6
    logged = trainer._metrics["eval"]  # hf.eval() above: trl logs under "eval"
    assert logged["rewards/chosen"][0] == pytest.approx(ours.chosen_reward.mean().item(), abs=1e-6)
    assert logged["rewards/accuracies"][0] == pytest.approx(ours.accuracy)
    assert logged["rewards/margins"][0] == pytest.approx(ours.margin, abs=1e-6)
