"""companion.lora against peft on the same MiniGPT, and the calculator against closed-form counts."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from companion import lora, quant
from companion.model import GPTConfig, MiniGPT

ALL = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")


def tiny(seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (3, 12), generator=torch.Generator().manual_seed(seed))


def randomize(model: nn.Module, seed: int = 2) -> None:
    """Nonzero B (and fresh A) in every adapter, so the LoRA path matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora.lora_layers(model):
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g) * 0.2)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.2)


def pair(targets, r=4, alpha=8.0, dropout=0.0, rslora=False):
    """Our LoRA and peft's on two copies of one base model, with our adapter weights copied into peft's."""
    base = tiny()
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    names = lora.add_lora(ours, r, alpha, targets, dropout=dropout, rslora=rslora)
    peft_model = get_peft_model(theirs, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets),
                                                   lora_dropout=dropout, use_rslora=rslora))
    randomize(ours)
    sd = peft_model.state_dict()
    with torch.no_grad():
        for name, layer in lora.lora_layers(ours):
            sd[f"base_model.model.{name}.lora_A.default.weight"].copy_(layer.lora_A)
            sd[f"base_model.model.{name}.lora_B.default.weight"].copy_(layer.lora_B)
    return base, ours, peft_model, names


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ALL])
def test_counts_and_outputs_match_peft(targets):
    base, ours, theirs, names = pair(targets)
    assert lora.trainable_parameters(ours) == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    peft_names = {n.removeprefix("base_model.model.") for n, m in theirs.named_modules() if hasattr(m, "lora_A")
                  and n.startswith("base_model.model.") and not n.endswith(("lora_A", "lora_B"))}
    assert set(names) == peft_names
    assert len(names) == 2 * len(targets)  # every target once per block ("proj" is mlp.proj, not q_proj)
    x = ids()
    out, ref = ours(x), theirs(x)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert (out - base(x)).abs().max() > 1e-3, "nonzero B must change the output"


def test_gradients_match_peft_and_only_adapters_train():
    _, ours, theirs, _ = pair(ALL)
    ours.train(), theirs.train()
    x = ids()
    ours(x).square().mean().backward()
    theirs(x).square().mean().backward()
    grads = {n: p.grad for n, p in theirs.named_parameters() if p.requires_grad}
    for name, layer in lora.lora_layers(ours):
        for k in ("A", "B"):
            torch.testing.assert_close(getattr(layer, f"lora_{k}").grad,
                                       grads[f"base_model.model.{name}.lora_{k}.default.weight"], atol=1e-6, rtol=1e-5)
    assert all(p.grad is None for n, p in ours.named_parameters() if "lora_" not in n)


def test_dropout_in_train_mode_matches_peft_with_a_shared_seed():
    _, ours, theirs, _ = pair(("q_proj", "v_proj", "fc"), dropout=0.3)
    ours.train(), theirs.train()
    x = ids()
    torch.manual_seed(5)
    out = ours(x)
    torch.manual_seed(5)
    ref = theirs(x)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    torch.manual_seed(6)
    assert (ours(x) - out).abs().max() > 1e-4, "another seed, another dropout mask"
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("rslora", [False, True])
def test_scaling_matches_peft(rslora):
    _, ours, theirs, _ = pair(("q_proj",), r=16, alpha=8.0, rslora=rslora)
    layer = dict(lora.lora_layers(ours))["blocks.0.attn.q_proj"]
    peft_layer = theirs.get_submodule("base_model.model.blocks.0.attn.q_proj")
    assert layer.scaling == pytest.approx(peft_layer.scaling["default"], rel=1e-12)
    assert layer.scaling == pytest.approx(8.0 / (4.0 if rslora else 16.0))
    torch.testing.assert_close(ours(ids()), theirs(ids()), atol=1e-6, rtol=0)


def test_init_starts_at_the_base_model_like_peft():
    base = tiny()
    model = copy.deepcopy(base)
    lora.add_lora(model, 4, 8, ALL)
    torch.testing.assert_close(model(ids()), base(ids()), atol=0, rtol=0)  # B = 0: ΔW = 0 exactly
    layer = dict(lora.lora_layers(model))["blocks.0.mlp.fc"]
    bound = 1 / layer.in_features ** 0.5  # kaiming_uniform_(a=√5) on (r, in) is U(-1/√in, 1/√in)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.8 * bound
    assert layer.lora_B.abs().max() == 0


def test_merge_unmerge_round_trip_and_merged_equals_unmerged():
    base, ours, theirs, _ = pair(ALL)
    x = ids()
    before = {n: p.clone() for n, p in ours.named_parameters()}
    unmerged = ours(x)
    lora.merge(ours)
    assert all(layer.merged for _, layer in lora.lora_layers(ours))
    torch.testing.assert_close(ours(x), unmerged, atol=1e-6, rtol=0)
    lora.merge(ours)  # idempotent
    torch.testing.assert_close(ours(x), unmerged, atol=1e-6, rtol=0)
    theirs.merge_adapter()  # peft's merged weights equal ours
    for name, layer in lora.lora_layers(ours):
        torch.testing.assert_close(layer.base.weight,
                                   theirs.get_submodule(f"base_model.model.{name}").base_layer.weight, atol=1e-7, rtol=0)
    lora.unmerge(ours)
    for n, p in ours.named_parameters():
        torch.testing.assert_close(p, before[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(ours(x), unmerged, atol=1e-6, rtol=0)


def test_merge_and_unload_gives_the_base_architecture():
    _, ours, _, _ = pair(ALL)
    x = ids()
    expected = ours(x)
    plain = lora.merge_and_unload(ours)
    assert not any(isinstance(m, lora.LoRALinear) for m in plain.modules())
    assert sum(p.numel() for p in plain.parameters()) == tiny().n_params()
    torch.testing.assert_close(plain(x), expected, atol=1e-6, rtol=0)


def test_state_dict_holds_only_adapters_and_loads_back():
    _, ours, _, names = pair(("q_proj", "v_proj"))
    sd = lora.lora_state_dict(ours)
    assert len(sd) == 2 * len(names) and sum(v.numel() for v in sd.values()) == lora.trainable_parameters(ours)
    other = tiny()
    lora.add_lora(other, 4, 8.0, ("q_proj", "v_proj"))
    lora.load_lora_state_dict(other, sd)
    torch.testing.assert_close(other(ids()), ours(ids()), atol=0, rtol=0)
    with pytest.raises(ValueError, match="missing"):
        lora.load_lora_state_dict(other, dict(list(sd.items())[1:]))


def test_qlora_equals_lora_over_the_dequantized_weight_and_trains():
    torch.manual_seed(0)
    linear = nn.Linear(128, 64)
    q = lora.QLoRALinear(linear, r=8, alpha=16)
    assert isinstance(q.base, quant.QuantLinear) and q.base.scheme.double_quant
    with torch.no_grad():
        q.lora_B.normal_(0, 0.1)
    deq = nn.Linear(128, 64)
    with torch.no_grad():
        deq.weight.copy_(q.base.dequantized_weight())
        deq.bias.copy_(linear.bias)
    ref = lora.LoRALinear(deq, r=8, alpha=16)
    with torch.no_grad():
        ref.lora_A.copy_(q.lora_A)
        ref.lora_B.copy_(q.lora_B)
    x = torch.randn(5, 128)
    torch.testing.assert_close(q(x), ref(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(q.merged_linear()(x), q(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(q.base.dequantized_weight(),  # the base is companion.quant's NF4, double-quantized
                               quant.quantize_nf4(linear.weight, 64, double_quant=True).dequantize(), atol=0, rtol=0)
    assert 4.1 < q.base.qweight.bits_per_param() < 4.2  # NF4 + double quantization (small tensor: ~4.13)
    q(x).sum().backward()
    assert q.lora_B.grad is not None and q.lora_B.grad.abs().sum() > 0 and [n for n, p in q.named_parameters()] == [
        "lora_A", "lora_B"]
    with pytest.raises(ValueError, match="cannot merge"):
        q.merge()


def test_add_lora_quantized_model():
    base = tiny()
    model = copy.deepcopy(base)
    names = lora.add_lora(model, 4, 8, ALL, quantize="nf4-dq")
    assert all(isinstance(m, lora.QLoRALinear) for _, m in lora.lora_layers(model)) and len(names) == 12
    assert (model(ids()) - base(ids())).abs().max() < 0.5  # only the 4-bit rounding of the base differs
    plain = lora.merge_and_unload(model)
    assert all(type(m) is nn.Linear for n, m in plain.named_modules() if n.endswith(ALL))


def test_bad_inputs():
    with pytest.raises(ValueError, match="target 'nope' matches no nn.Linear"):
        lora.add_lora(tiny(), 4, 8, ("q_proj", "nope"))
    for r in (0, -1, 33, 2.5, True):
        with pytest.raises(ValueError, match="r must be an int"):
            lora.add_lora(tiny(), r, 8, ("q_proj",))
    with pytest.raises(ValueError, match="r must be an int in \\[1, min\\(in, out\\) = 32\\]"):
        lora.LoRALinear(nn.Linear(32, 128), 33, 8)
    with pytest.raises(ValueError, match="alpha"):
        lora.add_lora(tiny(), 4, 0, ("q_proj",))
    with pytest.raises(ValueError, match="dropout"):
        lora.add_lora(tiny(), 4, 8, ("q_proj",), dropout=1.0)
    with pytest.raises(ValueError, match="targets"):
        lora.add_lora(tiny(), 4, 8, "q_proj")
    with pytest.raises(ValueError, match="targets"):
        lora.add_lora(tiny(), 4, 8, ())
    with pytest.raises(ValueError, match="base must be an nn.Linear"):
        lora.LoRALinear(nn.Conv1d(3, 3, 1), 1, 1)
    model = tiny()
    lora.add_lora(model, 2, 4, ("q_proj",))
    with pytest.raises(ValueError, match="already has LoRA"):
        lora.add_lora(model, 2, 4, ("v_proj",))
    with pytest.raises(ValueError, match="no LoRA layers"):
        lora.merge(tiny())
    with pytest.raises(ValueError, match="method"):
        lora.finetune_memory(7e9, "prefix")
    with pytest.raises(ValueError, match="needs shapes"):
        lora.finetune_memory(7e9, "lora")
    with pytest.raises(ValueError, match="n_params"):
        lora.finetune_memory(0, "full")
    with pytest.raises(ValueError, match="delta"):
        lora.energy_captured(torch.zeros(3))


def test_parameter_counts_against_published_numbers():
    assert lora.lora_parameter_count([(4096, 4096)], 16) == 131_072  # 128× fewer than 16,777,216
    assert 4096 * 4096 / lora.lora_parameter_count([(4096, 4096)], 16) == 128
    llama3 = lora.LLAMA["8B"]
    assert lora.lora_parameter_count(llama3.linear_shapes(), 16) == 41_943_040  # peft's print for Llama-3-8B, r=16
    assert lora.LLAMA["7B"].n_params() == 6_738_415_616  # Llama-2-7B
    assert lora.LLAMA["13B"].n_params() == 13_015_864_320  # Llama-2-13B
    assert lora.LLAMA["70B"].n_params() == 68_976_648_192  # Llama-2-70B
    assert lora.LLAMA["8B"].n_params() == 8_030_261_248  # Llama-3-8B (untied)
    model = tiny()
    shapes = [(m.out_features, m.in_features) for n, m in model.named_modules() if n.endswith(ALL)]
    lora.add_lora(model, 4, 8, ALL)
    assert lora.trainable_parameters(model) == lora.lora_parameter_count(shapes, 4)


def test_finetune_memory():
    full = lora.finetune_memory(7e9, "full")
    assert full.total == 16 * 7e9  # the mixed-precision Adam rule: 2 + 2 + 4 + 4 + 4 bytes per parameter
    shapes = [(4096, 4096)] * 10
    lo = lora.finetune_memory(7e9, "lora", 16, shapes)
    n = 10 * 131_072
    assert lo.weights == 2 * 7e9 and lo.adapters == 4 * n and lo.gradients == 4 * n and lo.optimizer == 8 * n
    ql = lora.finetune_memory(7e9, "qlora", 16, shapes)
    assert ql.weights == pytest.approx(7e9 * quant.nf4_bits_per_param(64, True, 256) / 8)
    assert ql.adapters == lo.adapters and ql.total < lo.total / 3
    q65 = lora.llama_finetune_memory("65B", "qlora", r=64)
    assert q65.total < 48e9 < lora.llama_finetune_memory("65B", "lora", r=64).total  # QLoRA's 65B on one 48 GB GPU
    assert lora.llama_finetune_memory("70B", "qlora", r=16).total < 80e9


def test_optimizer_state_prediction_equals_adamw():
    model = tiny()
    lora.add_lora(model, 4, 8, ALL)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    assert lora.optimizer_state_bytes(opt) == 0
    model(ids()).sum().backward()
    opt.step()
    assert lora.optimizer_state_bytes(opt) == lora.adamw_state_bytes(params) > 8 * lora.trainable_parameters(model)


def test_energy_captured_matches_svd_and_rank():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(40, 3, generator=g) @ torch.randn(3, 30, generator=g)
    share = lora.energy_captured(low)
    assert share.shape == (30,) and share[2] == pytest.approx(1.0, abs=1e-10) and share[1] < 1
    dense = torch.randn(40, 30, generator=g)
    s = torch.linalg.svdvals(dense.double())
    assert lora.energy_captured(dense, [1, 5])[1].item() == pytest.approx(float((s[:5] ** 2).sum() / (s ** 2).sum()))
    u, sv, vh = torch.linalg.svd(dense.double())
    best = (u[:, :5] * sv[:5]) @ vh[:5]  # Eckart–Young: the rank-5 truncation's residual is the rest
    assert 1 - ((dense - best) ** 2).sum() / (dense.double() ** 2).sum() == pytest.approx(
        lora.energy_captured(dense, [5]).item())
