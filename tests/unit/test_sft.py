"""companion.sft: prompt masking, packing, the loss against cross-entropy by hand, the instruction set."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion import lora, sft
from companion.model import GPTConfig, MiniGPT

V = 40


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(seed: int = 0, block: int = 32) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=V, block_size=block, n_layer=1, n_head=2, n_embd=16))


def random_examples(n: int, seed: int, max_prompt: int = 6, max_answer: int = 5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = int(torch.randint(1, max_prompt + 1, (1,), generator=g))
        a = int(torch.randint(1, max_answer + 1, (1,), generator=g))
        out.append(sft.example_tokens(torch.randint(0, V, (p,), generator=g).tolist(),
                                      torch.randint(0, V, (a,), generator=g).tolist()))
    return out


def test_example_tokens_masks_the_prompt_and_shifts_the_answer():
    assert sft.example_tokens([5, 6], [7, 8]) == ([5, 6, 7, 8], [-100, 7, 8, -100])
    assert sft.example_tokens([5, 6, 9], [7]) == ([5, 6, 9, 7], [-100, -100, 7, -100])
    assert sft.example_tokens([5, 6], [7, 8], mask_prompt=False) == ([5, 6, 7, 8], [6, 7, 8, -100])


def test_loss_equals_cross_entropy_by_hand_over_answer_tokens_only():
    model = tiny_model()
    ids, labels = sft.pad(random_examples(6, seed=1), 16)
    loss = sft.sft_loss(model, ids, labels)
    logp = torch.log_softmax(model(ids).float(), -1)
    nll = [-logp[b, t, labels[b, t]] for b in range(ids.shape[0]) for t in range(ids.shape[1]) if labels[b, t] != -100]
    torch.testing.assert_close(loss, torch.stack(nll).mean())
    ref = F.cross_entropy(model(ids).flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, ref)


def test_masked_positions_never_contribute():
    model = tiny_model()
    ids, labels = sft.pad(random_examples(4, seed=2), 16)
    logits = model(ids).float().detach().requires_grad_(True)
    F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100).backward()
    masked = labels == -100
    assert masked.any() and (~masked).any()
    assert torch.all(logits.grad[masked] == 0), "a masked position received a gradient"
    assert torch.all(logits.grad[~masked].abs().sum(-1) > 0)
    # the prompt's own tokens as targets change nothing once masked: build the unmasked labels, re-mask them
    rows = random_examples(4, seed=2)
    unmasked = [sft.example_tokens(x[: y.index(next(t for t in y if t != -100)) + 1],
                                   x[y.index(next(t for t in y if t != -100)) + 1:], mask_prompt=False) for x, y in rows]
    ids2, full = sft.pad(unmasked, 16)
    scrambled = torch.where(labels == -100, torch.randint(0, V, labels.shape), labels)
    scrambled[:, -1] = -100
    assert torch.equal(ids2, ids)
    assert not torch.isclose(sft.sft_loss(model, ids, full), sft.sft_loss(model, ids, labels))
    remasked = torch.where(labels == -100, -100, scrambled)
    torch.testing.assert_close(sft.sft_loss(model, ids, remasked), sft.sft_loss(model, ids, labels))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), seed=st.integers(0, 10_000), block=st.integers(11, 30))
def test_packing_keeps_every_answer_token_exactly_once(n, seed, block):
    examples = random_examples(n, seed)
    ids, labels = sft.pack(examples, block)
    assert ids.shape == labels.shape and ids.shape[1] == block
    packed_targets = labels[labels != -100].tolist()
    expected = [t for _, y in examples for t in y if t != -100]
    assert packed_targets == expected  # same tokens, same order, none twice, none lost
    # every target is the token that really follows its position inside its example
    pos = (labels != -100).nonzero()
    assert all(ids[b, t + 1] == labels[b, t] for b, t in pos.tolist())
    # examples stay whole: the rows hold the examples' ids in order, padding aside
    flat = [t for row, lab in zip(ids.tolist(), labels.tolist()) for t in row]
    assert len(flat) == ids.numel() and ids.shape[0] <= n
    assert sum(len(x) for x, _ in examples) <= ids.numel()


def test_pack_fills_rows_and_pads_with_ignored_labels():
    examples = [sft.example_tokens([1, 2], [3, 4]), sft.example_tokens([5], [6, 7]), sft.example_tokens([8, 9], [10])]
    ids, labels = sft.pack(examples, 7)
    assert ids.tolist() == [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 0, 0, 0, 0]]
    assert labels.tolist() == [[-100, 3, 4, -100, 6, 7, -100], [-100, 10, -100, -100, -100, -100, -100]]
    # the position before the next example's first token is never a target of that token
    assert labels[0, 3] == -100


def test_masked_loss_is_token_weighted_across_batches():
    model = tiny_model()
    ids, labels = sft.pad(random_examples(7, seed=3), 16)
    whole = sft.masked_loss(model, ids, labels, batch_size=64)
    torch.testing.assert_close(torch.tensor(sft.masked_loss(model, ids, labels, batch_size=2)), torch.tensor(whole))
    torch.testing.assert_close(torch.tensor(whole), sft.sft_loss(model, ids, labels).detach())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="answer_ids"):
        sft.example_tokens([1, 2], [])
    with pytest.raises(ValueError, match="prompt_ids"):
        sft.example_tokens([], [1])
    with pytest.raises(ValueError, match="int token ids"):
        sft.example_tokens([1.0, 2.0], [3])
    with pytest.raises(ValueError, match="int token ids"):
        sft.example_tokens([True], [3])
    with pytest.raises(ValueError, match="int token ids"):
        sft.example_tokens("abc", [3])
    with pytest.raises(ValueError, match=">= 0"):
        sft.example_tokens([-1], [3])
    with pytest.raises(ValueError, match="more than the block"):
        sft.pack([sft.example_tokens([1, 2, 3], [4, 5])], 4)
    with pytest.raises(ValueError, match="empty"):
        sft.pack([], 8)
    with pytest.raises(ValueError, match="block must be"):
        sft.pad([sft.example_tokens([1], [2])], 1)
    with pytest.raises(ValueError, match="answer .* is empty"):
        sft.encode_example(None, sft.Example("Q: x\nA:", " \n", "t", "section"))
    with pytest.raises(ValueError, match="all -100"):
        sft.sft_loss(tiny_model(), torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), -100))
    with pytest.raises(ValueError, match="steps must be"):
        sft.SFTConfig(steps=0)
    with pytest.raises(ValueError, match="val_frac"):
        sft.instruction_set(val_frac=1.0)


def test_instruction_set_is_deterministic_and_split_by_topic():
    train, val = sft.instruction_set()
    again, _ = sft.instruction_set()
    assert train == again and len(train) > 300 and len(val) > 50
    assert not {e.topic for e in train} & {e.topic for e in val}
    assert not {e.prompt for e in train} & {e.prompt for e in val}
    assert {e.kind for e in train} == {"method", "section", "grammar"}
    for e in train + val:
        assert e.prompt.startswith("Q: ") and e.prompt.endswith("\nA:")
        assert e.answer.startswith(" ") and e.answer.endswith("\n") and e.answer.count("\n") == 1
    w = next(e for e in train if e.prompt == "Q: What is the grammar rule for with_item?\nA:")
    assert w.answer == ' with_item ::= expression ["as" target]\n'


def test_train_sft_full_and_lora_lower_the_answer_loss():
    rows = random_examples(4, seed=5)
    ids, labels = sft.pack(rows, 32)
    cfg = sft.SFTConfig(steps=40, batch_size=4, peak_lr=3e-2, warmup_steps=2, eval_every=20)
    full = tiny_model()
    h = sft.train_sft(full, ids, labels, cfg, val=(ids, labels), progress=False)
    assert h.eval_step == [0, 20, 40] and h.val_loss[-1] < 0.5 * h.val_loss[0]
    adapted = tiny_model()
    frozen = {k: v.clone() for k, v in adapted.state_dict().items()}
    lora.add_lora(adapted, r=4, alpha=8, targets=("q_proj", "v_proj", "fc", "proj"))
    assert sft.trainable_count(adapted) == lora.trainable_parameters(adapted) < sft.trainable_count(tiny_model()) / 4
    h2 = sft.train_sft(adapted, ids, labels, cfg, val=(ids, labels), progress=False)
    assert h2.val_loss[-1] < h2.val_loss[0]
    assert torch.equal(adapted.wte.weight, frozen["wte.weight"]), "LoRA must leave the base weights untouched"


def test_sample_answers_stop_at_the_first_newline():
    class Tok:  # ids are characters: 0..39 -> 'a'.. with 10 = newline
        def encode_ordinary(self, text):
            return [10 if c == "\n" else ord(c) % 30 + 11 if c != " " else 0 for c in text]

        def decode(self, ids):
            return "".join("\n" if i == 10 else chr(97 + i % 26) for i in ids)

    model = tiny_model(block=32)
    with torch.no_grad():
        model.lm_head.weight[10] += 0.5  # make newlines common
    out = sft.sample_answers(model, Tok(), ["ab", "abc", "xy"], 20, generator=torch.Generator().manual_seed(0),
                             n_samples=3)
    assert [len(o) for o in out] == [3, 3, 3]
    assert all(a.count("\n") <= 1 and ("\n" not in a or a.endswith("\n")) for o in out for a in o)
    with pytest.raises(ValueError, match="context"):
        sft.sample_answers(model, Tok(), ["ab"], 31)
