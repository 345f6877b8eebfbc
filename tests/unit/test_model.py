"""companion.model: MiniGPT equals Hugging Face's GPT2LMHeadModel on the same weights."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from companion.model import GPTConfig, MiniGPT, RMSNorm, gpt2_param_count, load_hf_gpt2

SMALL = dict(vocab_size=101, block_size=32, n_layer=2, n_head=4, n_embd=64)


@pytest.fixture(scope="module")
def hf_and_ours():
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_positions=32, n_layer=2, n_head=4, n_embd=64,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()
    ours = MiniGPT(GPTConfig(**SMALL)).eval()
    load_hf_gpt2(ours, hf.state_dict())
    return hf, ours


def test_logits_equal_gpt2lmheadmodel(hf_and_ours):
    hf, ours = hf_and_ours
    ids = torch.randint(0, 101, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-5, rtol=1e-5)


def test_parameter_count_matches_the_formula_and_hf(hf_and_ours):
    hf, ours = hf_and_ours
    assert ours.n_params() == gpt2_param_count(ours.cfg) == sum(p.numel() for p in hf.parameters())
    big = GPTConfig(n_layer=12, n_head=12, n_embd=768)  # GPT-2 small, by formula only
    assert gpt2_param_count(big) == 124_439_808


def test_initial_loss_is_about_ln_vocab():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(**SMALL))
    ids = torch.randint(0, 101, (8, 32))
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    assert loss.item() == pytest.approx(math.log(101), rel=0.05)


@pytest.mark.parametrize("options", [dict(), dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False)])
def test_overfits_one_batch(options):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(**SMALL, **options))
    ids = torch.randint(0, 101, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_is_causal_and_returns_attention_maps():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(**SMALL)).eval()
    ids = torch.randint(0, 101, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1) % 101
    with torch.no_grad():
        a, maps = model(ids, return_attention=True)
        b = model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7], msg="a later token cannot change earlier logits")
    assert not torch.allclose(a[:, 7:], b[:, 7:]), "but it does change its own and later logits"
    assert len(maps) == 2 and maps[0].shape == (1, 4, 10, 10) and (maps[0].triu(1) == 0).all()


def test_rmsnorm_matches_torch():
    x = torch.randn(4, 7, 16)
    ours, theirs = RMSNorm(16, eps=1e-5), torch.nn.RMSNorm(16, eps=1e-5)
    torch.testing.assert_close(ours(x), theirs(x))


def test_swiglu_costs_what_gelu_costs():
    gelu = MiniGPT(GPTConfig(**SMALL))
    swiglu = MiniGPT(GPTConfig(**SMALL, mlp="swiglu"))
    mlp_params = [sum(p.numel() for p in m.blocks[0].mlp.parameters()) for m in (gelu, swiglu)]
    assert abs(mlp_params[1] / mlp_params[0] - 1) < 0.05


def test_bad_inputs_are_named():
    model = MiniGPT(GPTConfig(**SMALL))
    with pytest.raises(ValueError, match="ids must be a long tensor"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="exceeds block_size=32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids must be in \[0, vocab_size=101\)"):
        model(torch.full((1, 3), 101))
    with pytest.raises(ValueError, match="norm must be"):
        GPTConfig(**SMALL, norm="batchnorm")
    with pytest.raises(ValueError, match="needs a GPT-2 config"):
        load_hf_gpt2(MiniGPT(GPTConfig(**SMALL, mlp="swiglu")), {})
    with pytest.raises(ValueError, match="missing 'h.1.mlp.c_fc.weight'"):
        gpt2 = MiniGPT(GPTConfig(**SMALL))
        sd = {"transformer." + k: v for k, v in hf_state(gpt2).items() if k != "h.1.mlp.c_fc.weight"}
        load_hf_gpt2(gpt2, sd)


def hf_state(model: MiniGPT) -> dict[str, torch.Tensor]:
    """The keys a GPT-2 state dict has (values need only the right shapes for the key check)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_layer=cfg.n_layer,
                                    n_head=cfg.n_head, n_embd=cfg.n_embd))
    return {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}


@pytest.mark.parametrize("options", [{}, {"positions": "rope", "n_kv_head": 2, "norm": "rmsnorm", "mlp": "swiglu"}])
def test_fused_attention_path_gives_the_same_logits(options):
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(**{**SMALL, **options})).eval()
    ids = torch.randint(0, 101, (2, 12))
    with torch.no_grad():
        fused = model(ids)
        reference, _ = model(ids, return_attention=True)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)


def test_real_gpt2_is_optional_and_fails_clearly_offline(monkeypatch, tmp_path):
    from companion.model import pretrained_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to load without the network
    with pytest.raises(RuntimeError, match="allow_download=True"):
        pretrained_gpt2()


def test_swiglu_mlp_equals_llama_mlp():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from companion.model import MLP

    torch.manual_seed(0)
    ours = MLP(GPTConfig(n_embd=64, n_head=4, mlp="swiglu", bias=False))
    theirs = LlamaMLP(LlamaConfig(hidden_size=64, intermediate_size=ours.fc.out_features, hidden_act="silu",
                                  mlp_bias=False))
    with torch.no_grad():  # ours: proj(silu(fc(x)) * gate(x)); Llama: down(silu(gate_proj(x)) * up_proj(x))
        theirs.gate_proj.weight.copy_(ours.fc.weight)
        theirs.up_proj.weight.copy_(ours.gate.weight)
        theirs.down_proj.weight.copy_(ours.proj.weight)
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(ours(x), theirs(x))


def test_to_hf_gpt2_is_the_same_model_and_generates_the_same_tokens():
    from companion import decoding
    from companion.model import to_hf_gpt2

    torch.manual_seed(3)
    ours = MiniGPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32)).eval()
    hf = to_hf_gpt2(ours)
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=1e-5)
    prompt = ids[:, :5]  # holds a token 0: without an explicit mask, HF would take it for padding
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(theirs, decoding.generate(ours, prompt, 12, decoding.SamplingConfig(greedy=True)))


def test_to_hf_gpt2_refuses_a_llama_style_config():
    from companion.model import to_hf_gpt2

    with pytest.raises(ValueError, match="GPT-2 config"):
        to_hf_gpt2(MiniGPT(GPTConfig(vocab_size=97, block_size=32, n_layer=1, n_head=4, n_embd=32, positions="rope")))
