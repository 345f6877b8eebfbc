"""companion.quant: round-trip bounds, torch's own quantizer, QLoRA's NF4 table, LLM.int8() and SmoothQuant."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from companion import quant
from companion.model import GPTConfig, MiniGPT

# The 16 NF4 levels as published: Dettmers et al. (2023), "QLoRA", Appendix E, and bitsandbytes
# (``functional.get_4bit_type("nf4")``).
NF4_REFERENCE = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def with_outlier_channel(seed: int = 0) -> torch.Tensor:
    """(64, 192) weights whose row 3 is 50× larger than the rest: one output channel sets a per-tensor scale."""
    w = randn(64, 192, seed=seed) * 0.02
    w[3] *= 50
    return w


def activations_with_outliers(seed: int = 0) -> torch.Tensor:
    """(32, 256) activations ~ N(0, 1) with 4 feature columns at magnitude ~60, as LLM.int8() reports at scale."""
    x = randn(32, 256, seed=seed)
    x[:, [7, 50, 101, 200]] *= 60
    return x


# --- the primitives --------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("options", [{}, {"axis": 0}, {"axis": 1}, {"group_size": 128}, {"group_size": 32}])
def test_round_to_nearest_is_within_half_a_step(bits, options):
    x = randn(48, 192, seed=bits)
    qt = quant.quantize_tensor(x, bits, **options)
    lo, hi = quant.qrange(bits)
    assert qt.codes.dtype == torch.int8 and lo <= int(qt.codes.min()) and int(qt.codes.max()) <= hi
    assert torch.all((x - qt.dequantize()).abs() <= qt.step / 2 * (1 + 1e-6))
    assert qt.dequantize().shape == x.shape


def test_asymmetric_is_exact_at_min_and_max_and_rounded_zero_point_is_exact_at_zero():
    x = randn(16, 100, seed=1) + 0.7  # not centred: the affine range fits it, a symmetric one would not
    qt = quant.quantize_tensor(x, 4, axis=0, symmetric=False)
    back = qt.dequantize()
    rows = torch.arange(16)
    torch.testing.assert_close(back[rows, x.argmin(1)], x.min(1).values, rtol=0, atol=1e-6)
    torch.testing.assert_close(back[rows, x.argmax(1)], x.max(1).values, rtol=0, atol=1e-6)
    assert torch.all((x - back).abs() <= qt.step / 2 * (1 + 1e-5))
    sym = quant.quantize_tensor(x, 4, axis=0)
    assert ((x - back) ** 2).mean() < ((x - sym.dequantize()) ** 2).mean(), "affine uses all 16 levels on skewed data"
    scale, zero = quant.affine_params(x, bits=8, round_zero_point=True)
    q, _ = quant.quantize(torch.zeros(1, 3), scale, zero_point=zero)
    assert float(zero) == round(float(zero)) and torch.equal(quant.dequantize(q, scale, zero_point=zero), torch.zeros(1, 3))


def test_per_channel_beats_per_tensor_when_one_channel_is_large():
    w = with_outlier_channel()
    mse = {name: ((w - quant.fake_quantize(w, 8, **opt)) ** 2)[torch.arange(64) != 3].mean().item()
           for name, opt in (("tensor", {}), ("channel", {"axis": 0}))}
    assert mse["channel"] < mse["tensor"] / 100, mse


def test_smaller_groups_give_smaller_error_and_cost_more_bits():
    w = randn(128, 768, seed=2) * torch.rand(1, 768, generator=torch.Generator().manual_seed(3)) * 3
    sizes = [768, 256, 128, 64, 32]
    errors = [((w - quant.fake_quantize(w, 4, group_size=g)) ** 2).mean().item() for g in sizes]
    bits = [quant.quantize_tensor(w, 4, group_size=g).bits_per_param() for g in sizes]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert bits == pytest.approx([4 + 32 / g for g in sizes])


def test_ragged_last_group_has_its_own_scale():
    w = randn(8, 192, seed=4)
    w[:, 128:] *= 0.01  # the tail group (64 inputs) is tiny: it must not borrow the first group's scale
    qt = quant.quantize_tensor(w, 4, group_size=128)
    assert qt.scale.shape == (8, 2, 1)
    torch.testing.assert_close(qt.scale[:, 1, 0], w[:, 128:].abs().amax(1) / 7)
    tail_error = (w[:, 128:] - qt.dequantize()[:, 128:]).abs().max()
    assert tail_error <= w[:, 128:].abs().max() / 14 * (1 + 1e-6)


@pytest.mark.parametrize("n", [1, 2, 7, 192 * 3])
def test_int4_pack_unpack_round_trip(n):
    codes = torch.randint(-8, 8, (n,), generator=torch.Generator().manual_seed(n), dtype=torch.int8)
    packed = quant.pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == (n + 1) // 2
    assert torch.equal(quant.unpack_int4(packed, n), codes)
    qt = quant.quantize_tensor(randn(16, 192), 4, axis=0)  # quantized codes pack in half the bytes
    assert torch.equal(quant.unpack_int4(quant.pack_int4(qt.codes), qt.codes.numel()).view(16, 192), qt.codes)
    assert quant.pack_int4(torch.tensor([1, -1, 7], dtype=torch.int8)).tolist() == [0xF1, 0x07]


# --- PyTorch's own quantizer -----------------------------------------------------------------


def test_int8_codes_equal_torch_quantize_per_tensor_and_per_channel():
    x = randn(64, 192, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates its quantized tensors in favour of torchao
        scale = quant.absmax_scale(x)
        q, _ = quant.quantize(x, scale)
        ref = torch.quantize_per_tensor(x, float(scale), 0, torch.qint8)
        assert torch.equal(ref.int_repr(), q) and torch.equal(ref.dequantize(), quant.dequantize(q, scale))

        scale, zero = quant.affine_params(x, bits=8, round_zero_point=True)
        q, _ = quant.quantize(x, scale, zero_point=zero)
        ref = torch.quantize_per_tensor(x, float(scale), int(zero), torch.qint8)
        assert torch.equal(ref.int_repr(), q) and torch.equal(ref.dequantize(), quant.dequantize(q, scale, zero_point=zero))

        for axis in (0, 1):
            qt = quant.quantize_tensor(x, 8, axis=axis)
            ref = torch.quantize_per_channel(x, qt.scale.flatten().double(), torch.zeros(x.shape[axis], dtype=torch.long),
                                             axis, torch.qint8)
            assert torch.equal(ref.int_repr(), qt.codes) and torch.equal(ref.dequantize(), qt.dequantize())

        scale, zero = quant.affine_params(x, dim=1, bits=8, round_zero_point=True)  # a scale and zero per row
        q, _ = quant.quantize(x, scale, zero_point=zero)
        ref = torch.quantize_per_channel(x, scale.flatten().double(), zero.flatten().long(), 0, torch.qint8)
        assert torch.equal(ref.int_repr(), q)
        torch.testing.assert_close(ref.dequantize(), quant.dequantize(q, scale, zero_point=zero), rtol=0, atol=1e-6)


# --- NF4 ------------------------------------------------------------------------------------


def test_nf4_levels_match_the_published_table():
    levels = quant.nf4_levels()
    assert levels.shape == (16,) and torch.all(levels[1:] > levels[:-1]) and (levels == 0).sum() == 1
    torch.testing.assert_close(levels.double(), torch.tensor(NF4_REFERENCE, dtype=torch.float64), rtol=0, atol=1e-4)
    assert (levels > 0).sum() == 8 and (levels < 0).sum() == 7


def test_nf4_fills_its_levels_evenly_and_beats_int4_on_normal_weights():
    w = randn(256, 256, seed=6)
    nf = quant.quantize_nf4(w)
    int4_codes = quant.quantize_tensor(w.flatten(), 4, group_size=64)
    assert code_entropy(nf.codes) > 3.8 > 3.6 > code_entropy(int4_codes.codes + 8), "NF4 uses its 16 codes more evenly"
    int4 = int4_codes.dequantize().view_as(w)
    assert ((w - nf.dequantize()) ** 2).mean() < 0.85 * ((w - int4) ** 2).mean()
    assert torch.all((w - nf.dequantize()).abs().flatten() <= (_nf4_half_gap() * nf.absmax[:, None]).flatten() + 1e-6)


def code_entropy(codes: torch.Tensor) -> float:
    """Bits of information per code: log2(16) = 4 when all 16 codes are equally frequent."""
    p = torch.bincount(codes.flatten().long(), minlength=16).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log2()).sum())


def _nf4_half_gap() -> torch.Tensor:
    return torch.full((1, 64), float((quant.NF4[1:] - quant.NF4[:-1]).max() / 2))


def test_double_quantization_memory_math():
    assert quant.nf4_bits_per_param() == 4.5
    assert quant.nf4_bits_per_param(double_quant=True) == pytest.approx(4 + 8 / 64 + 32 / (64 * 256))
    assert quant.nf4_bits_per_param(double_quant=True) == pytest.approx(4.127, abs=5e-4)
    assert 4.5 - quant.nf4_bits_per_param(double_quant=True) == pytest.approx(0.373, abs=5e-4)
    w = randn(64, 64 * 256, seed=7) * 0.02  # 16,384 blocks of 64: 64 blocks of constants of 256
    plain, dq = quant.quantize_nf4(w), quant.quantize_nf4(w, double_quant=True)
    assert plain.bits_per_param() == 4.5
    assert dq.bits_per_param() == pytest.approx(quant.nf4_bits_per_param(double_quant=True), abs=1e-3)
    assert (plain.constants() - dq.constants()).abs().max() <= dq.absmax_scale.max() / 2 * (1 + 1e-5)
    rel = ((w - dq.dequantize()) ** 2).mean() / ((w - plain.dequantize()) ** 2).mean()
    assert rel < 1.01, "8-bit constants cost almost nothing in accuracy"


def test_ragged_nf4_block_and_shapes():
    w = randn(3, 50, seed=8)  # 150 values: blocks of 64, 64 and 22
    nf = quant.quantize_nf4(w)
    assert nf.absmax.shape == (3,) and nf.dequantize().shape == (3, 50)
    torch.testing.assert_close(nf.absmax[2], w.flatten()[128:].abs().max())


# --- activations: LLM.int8() and SmoothQuant -------------------------------------------------


def test_int8_matmul_accumulates_exactly_in_int32():
    x, w = randn(16, 64, seed=9), randn(32, 64, seed=10)
    y = quant.int8_matmul(x, w)
    sx, sw = quant.absmax_scale(x, 1), quant.absmax_scale(w, 1)
    exact = (quant.quantize(x, sx)[0].double() @ quant.quantize(w, sw)[0].double().T) * sx.double() * sw.double().T
    torch.testing.assert_close(y.double(), exact, rtol=1e-6, atol=1e-6)
    assert (y - x @ w.T).abs().max() < 0.05 * (x @ w.T).abs().max()


def test_llm_int8_decomposition_rescues_outlier_features():
    x, w = activations_with_outliers(), randn(128, 256, seed=11) * 0.05
    ref = x @ w.T
    rms = {name: (y - ref).pow(2).mean().sqrt().item() for name, y in (
        ("per-tensor", quant.int8_matmul(x, w, "tensor")),
        ("vector-wise", quant.int8_matmul(x, w, "vector")),
        ("llm.int8", quant.llm_int8_matmul(x, w, threshold=6.0)))}
    x0 = randn(32, 256)  # the same activations without the outlier columns
    rms["no outliers"] = (quant.int8_matmul(x0, w, "tensor") - x0 @ w.T).pow(2).mean().sqrt().item()
    assert quant.outlier_columns(x).nonzero().flatten().tolist() == [7, 50, 101, 200]
    assert rms["per-tensor"] > 10 * rms["no outliers"], rms  # the outliers, not int8 itself, break per-tensor
    assert rms["vector-wise"] > 10 * rms["no outliers"], rms  # a scale per token does not help: every token has them
    assert rms["llm.int8"] < rms["no outliers"] and rms["llm.int8"] < rms["per-tensor"] / 20, rms
    assert ((quant.llm_int8_matmul(x, w) - ref).norm() / ref.norm()) < 0.005


def test_smoothquant_migrates_the_outliers_into_the_weights():
    x, w = activations_with_outliers(1), randn(128, 256, seed=12) * 0.05
    ref = x @ w.T
    err = {a: (quant.smoothquant_matmul(x, w, a) - ref).norm().item() for a in (0.0, 0.25, 0.5, 0.75, 1.0)}
    plain = (quant.int8_matmul(x, w, "tensor") - ref).norm().item()
    assert err[0.5] < plain / 2, (err, plain)
    assert err[0.5] < err[0.0] and err[0.5] < err[1.0], "the optimum is in between: both operands must stay easy"
    s = quant.smooth_scales(x.abs().amax(0), w, 0.5)
    torch.testing.assert_close((x / s) @ (w * s).T, ref, rtol=1e-4, atol=1e-4)  # the product is unchanged
    spread = lambda t: (t.abs().amax(0).max() / t.abs().amax(0).min()).item()  # noqa: E731
    assert spread(x / s) < spread(x) / 5, "the activations' channels are far more even after smoothing"
    torch.testing.assert_close(s, (x.abs().amax(0) / w.abs().amax(0)).sqrt())


# --- layers, models and memory ---------------------------------------------------------------


@pytest.mark.parametrize("scheme, tol", [("int8", 0.01), ("int8-tensor", 0.02), ("int4-g128", 0.12), ("int4-g32", 0.1),
                                         ("nf4", 0.1), ("nf4-dq", 0.1), ("llm.int8", 0.02)])
def test_quant_linear_is_close_to_nn_linear(scheme, tol):
    torch.manual_seed(0)
    linear = nn.Linear(192, 96)
    x = randn(4, 10, 192, seed=13)
    ql = quant.QuantLinear(linear, scheme)
    with torch.no_grad():
        ref, out = linear(x), ql(x)
    assert out.shape == ref.shape
    assert ((out - ref).norm() / ref.norm()).item() < tol
    assert ql.nbytes() < linear.weight.numel() * 4 / (1.9 if "8" in scheme else 3.5)
    state = ql.state_dict()
    assert "q_codes" in state and "weight" not in state


def test_quantize_model_swaps_linears_and_keeps_the_head_unless_asked():
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    q8 = quant.quantize_model(model, "int8")
    swapped = [n for n, m in q8.named_modules() if isinstance(m, quant.QuantLinear)]
    assert len(swapped) == 2 * 6 and "lm_head" not in swapped, swapped
    assert isinstance(model.blocks[0].mlp.fc, nn.Linear), "the original model is left alone"
    with torch.no_grad():
        ref, out = model(ids), q8(ids)
    assert (out - ref).abs().max() < 0.02 * ref.abs().max()
    with_head = quant.quantize_model(model, "int4-g128", include_lm_head=True)
    assert isinstance(with_head.lm_head, quant.QuantLinear)
    fp_bytes = quant.model_weight_bytes(model)
    assert fp_bytes == model.n_params() * 4
    assert quant.model_weight_bytes(q8) < fp_bytes
    linear_params = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head")
    saved = fp_bytes - quant.model_weight_bytes(q8)
    assert saved == pytest.approx(linear_params * 3, rel=0.05), "int8 saves 3 of every 4 bytes of the linear weights"


def test_memory_calculator():
    assert quant.model_memory_gb(70e9, "fp16") == 140.0
    assert quant.model_memory_gb(70e9, "int8") == 70.0
    assert quant.model_memory_gb(70e9, "int4") == 35.0
    assert quant.model_memory_gb(7e9, "fp32") == 28.0
    assert quant.model_memory_gb(70e9, "nf4") == pytest.approx(39.375)
    assert quant.model_memory_gb(70e9, "nf4-dq") == pytest.approx(70e9 * 4.127 / 8 / 1e9, rel=1e-3)


# --- bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    x = randn(4, 8)
    with pytest.raises(ValueError, match=r"bits must be an int in \[2, 8\], got 1"):
        quant.quantize_tensor(x, 1)
    with pytest.raises(ValueError, match="bits must be an int"):
        quant.quantize_tensor(x, 9)
    with pytest.raises(ValueError, match="group_size must be an int >= 1, got 0"):
        quant.quantize_tensor(x, 4, group_size=0)
    with pytest.raises(ValueError, match="group_size must be an int >= 1"):
        quant.quantize_tensor(x, 4, group_size=-3)
    with pytest.raises(ValueError, match="x must be a floating-point tensor, got torch.int64"):
        quant.quantize_tensor(torch.arange(8), 8)
    with pytest.raises(ValueError, match="NaN or infinity"):
        quant.quantize_tensor(torch.tensor([1.0, float("nan")]), 8)
    with pytest.raises(ValueError, match="NaN or infinity"):
        quant.quantize_nf4(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match=r"axis must be an int in \[-2, 1\]"):
        quant.quantize_tensor(x, 8, axis=2)
    with pytest.raises(ValueError, match="not both"):
        quant.quantize_tensor(x, 4, axis=0, group_size=4)
    with pytest.raises(ValueError, match=r"4-bit codes must lie in \[-8, 7\]"):
        quant.pack_int4(torch.tensor([8], dtype=torch.int8))
    with pytest.raises(ValueError, match="numel must be"):
        quant.unpack_int4(torch.zeros(2, dtype=torch.uint8), 7)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        quant.quantize_nf4(x, block_size=0)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
        quant.smooth_scales(x.abs().amax(0), x, 1.5)
    with pytest.raises(ValueError, match="threshold must be a number > 0"):
        quant.llm_int8_matmul(x, x, threshold=0)
    with pytest.raises(ValueError, match="the same K"):
        quant.int8_matmul(x, randn(3, 5))
    with pytest.raises(ValueError, match="scheme must be a Scheme or one of"):
        quant.QuantLinear(nn.Linear(4, 4), "int3-magic")
    with pytest.raises(ValueError, match="linear must be an nn.Linear"):
        quant.QuantLinear(nn.Conv1d(4, 4, 1), "int8")
    with pytest.raises(ValueError, match="fmt must be one of"):
        quant.model_memory_gb(7e9, "fp8")
    with pytest.raises(ValueError, match="set axis=None"):
        quant.Scheme(bits=4, group_size=128)
