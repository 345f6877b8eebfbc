"""companion.numerics: overflow, formats, summation error and loss scaling, checked against torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from companion import numerics
from companion.numerics import DynamicLossScaler

LOW_PRECISION = [torch.float16, torch.bfloat16, torch.float32]


# ----------------------------------------------------------------------------- softmax, logsumexp


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_stable_versions_match_torch_within_dtype_precision(dtype):
    x64 = 5 * torch.randn(8, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x64[0, 0] = 300.0 if dtype != torch.float16 else 60_000.0  # would overflow exp in any of them
    x = x64.to(dtype)
    eps = torch.finfo(dtype).eps
    ref_softmax = torch.softmax(x.double(), dim=-1)
    ref_lse = torch.logsumexp(x.double(), dim=-1)
    softmax, lse = numerics.softmax_stable(x), numerics.logsumexp_stable(x)
    assert softmax.dtype == dtype and lse.dtype == dtype
    assert (softmax.double() - ref_softmax).abs().max() <= 4 * eps
    assert ((lse.double() - ref_lse).abs() <= 4 * eps * ref_lse.abs().clamp_min(1)).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=30))
def test_stable_softmax_sums_to_one_for_any_input(values):
    x = torch.tensor(values, dtype=torch.float32)
    p = numerics.softmax_stable(x)
    assert torch.isfinite(p).all() and abs(p.sum().item() - 1) < 1e-5
    assert numerics.logsumexp_stable(x).item() == pytest.approx(torch.logsumexp(x, 0).item(), rel=1e-6, abs=1e-6)


def test_naive_versions_overflow_where_the_chapter_says():
    assert torch.isnan(numerics.softmax_naive(torch.tensor([0.0, 100.0]))).any()
    assert torch.isinf(numerics.logsumexp_naive(torch.tensor([0.0, 100.0])))
    # fp16: exp overflows just above 11.09.
    assert torch.isfinite(numerics.softmax_naive(torch.tensor([0.0, 11.0], dtype=torch.float16))).all()
    assert torch.isnan(numerics.softmax_naive(torch.tensor([0.0, 12.0], dtype=torch.float16))).any()


def test_logsumexp_stable_keeps_minus_infinity():
    x = torch.full((2, 3), -math.inf)
    torch.testing.assert_close(numerics.logsumexp_stable(x), torch.logsumexp(x, dim=-1))


@pytest.mark.parametrize("dtype, expected", [(torch.float32, 88.72), (torch.float16, 11.09), (torch.bfloat16, 88.72)])
def test_exp_overflow_threshold_is_where_torch_exp_overflows(dtype, expected):
    threshold = numerics.exp_overflow_threshold(dtype)
    assert threshold == pytest.approx(expected, abs=0.01)
    below = torch.tensor(threshold * 0.99, dtype=dtype)  # 1% covers bf16's spacing of 0.5 near 88
    above = torch.tensor(threshold * 1.01, dtype=dtype)
    assert torch.isfinite(torch.exp(below)) and torch.isinf(torch.exp(above))


def test_numerics_reject_non_float_inputs():
    with pytest.raises(TypeError, match="x must be a floating point torch.Tensor"):
        numerics.softmax_stable(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="dtype must be a torch floating point dtype"):
        numerics.exp_overflow_threshold(torch.int32)


# ----------------------------------------------------------------------------- formats


def test_float_formats_agree_with_torch_finfo_and_known_values():
    formats = {f["name"]: f for f in numerics.float_formats()}
    assert {"float32", "float16", "bfloat16"} <= set(formats)
    assert formats["float16"]["max"] == 65504.0
    assert formats["bfloat16"]["max"] == pytest.approx(3.39e38, rel=1e-3)
    assert (formats["float16"]["exponent_bits"], formats["float16"]["mantissa_bits"]) == (5, 10)
    assert (formats["bfloat16"]["exponent_bits"], formats["bfloat16"]["mantissa_bits"]) == (8, 7)
    assert (formats["float32"]["exponent_bits"], formats["float32"]["mantissa_bits"]) == (8, 23)
    assert formats["float16"]["smallest_subnormal"] == 2.0**-24
    for name, f in formats.items():
        dtype = getattr(torch, name)
        info = torch.finfo(dtype)
        assert (f["bits"], f["eps"], f["smallest_normal"]) == (info.bits, info.eps, info.smallest_normal)
        assert f["bits"] == 1 + f["exponent_bits"] + f["mantissa_bits"]
        # The smallest subnormal survives a cast; 40% of it rounds to zero.
        tiny = f["smallest_subnormal"]
        assert torch.tensor(tiny).to(dtype).float().item() == tiny
        assert torch.tensor(0.4 * tiny).to(dtype).float().item() == 0.0
    if "float8_e4m3fn" in formats:
        assert (formats["float8_e4m3fn"]["max"], formats["float8_e5m2"]["max"]) == (448.0, 57344.0)


# ----------------------------------------------------------------------------- summation


def test_accumulate_sums_exactly_representable_values_exactly():
    x = np.array([0.5, 0.25, 1.0, 2.0, 0.125])
    for dtype in (np.float16, np.float32, np.float64):
        for method in numerics.SUM_METHODS:
            assert numerics.accumulate(x, dtype, method) == 3.875
    assert numerics.accumulate(np.array([]), np.float16) == 0.0


def test_fp16_sequential_sum_stalls_and_grows_with_n():
    errors = [numerics.relative_sum_error(n, np.float16, "sequential") for n in (1_000, 5_000, 10_000)]
    assert errors[0] < errors[1] < errors[2]
    # Past 2048 the fp16 spacing is 2, so adding values < 1 changes nothing: the sum stops there.
    assert errors[2] > 0.5  # measured 0.59: the sum stalls at 2048 instead of ~4994
    assert numerics.accumulate(np.ones(5000) * 0.9, np.float16, "sequential") == 2048.0


def test_better_summation_fixes_fp16_and_fp32_is_fine():
    for method in numerics.SUM_METHODS:
        assert numerics.relative_sum_error(10_000, np.float32, method) < 1e-4
    sequential = numerics.relative_sum_error(10_000, np.float16, "sequential")
    for method in ("pairwise", "kahan"):
        # ~4e-4 is the rounding of the final fp16 result itself (spacing 4 near 5000).
        assert numerics.relative_sum_error(10_000, np.float16, method) < 1e-3 < sequential / 100


def test_summation_matches_numpy_where_numpy_really_works_in_that_dtype():
    x = np.random.default_rng(1).uniform(0, 1, 1000).astype(np.float32)
    assert numerics.accumulate(x, np.float64, "pairwise") == pytest.approx(np.sum(x, dtype=np.float64), rel=1e-15)
    seq16 = np.float16(0)
    for v in x[:200].astype(np.float16):
        seq16 = np.float16(seq16 + v)
    assert numerics.accumulate(x[:200], np.float16, "sequential") == float(seq16)


def test_summation_rejects_bad_inputs():
    with pytest.raises(TypeError, match="x must be a 1-D numpy array"):
        numerics.accumulate([1.0, 2.0], np.float32)
    with pytest.raises(TypeError, match="dtype must be np.float16, np.float32 or np.float64"):
        numerics.accumulate(np.ones(3), np.int32)
    with pytest.raises(ValueError, match=r"method must be one of \('sequential', 'pairwise', 'kahan'\)"):
        numerics.accumulate(np.ones(3), np.float32, "fast")
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 1000000\]"):
        numerics.relative_sum_error(0, np.float32)


# ----------------------------------------------------------------------------- loss scaling


def run_torch_grad_scaler(flags, **config):
    """Drive torch.amp.GradScaler through real steps, injecting an inf gradient where flags say."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", **config)
    x = torch.randn(8, 4)
    scales, weights_changed = [], []
    for flag in flags:
        before = model.weight.detach().clone()
        opt.zero_grad()
        scaler.scale(model(x).pow(2).mean()).backward()
        if flag:
            model.weight.grad[0, 0] = math.inf
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        weights_changed.append(not torch.equal(before, model.weight))
    return scales, weights_changed


def run_ours(flags, **config):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    scaler = DynamicLossScaler(**config)
    x = torch.randn(8, 4)
    scales, found = [], []
    for flag in flags:
        model.zero_grad()
        scaler.scale_loss(model(x).pow(2).mean()).backward()
        if flag:
            model.weight.grad[0, 0] = math.inf
        found_inf = scaler.unscale_and_check([p.grad for p in model.parameters()])
        found.append(found_inf)
        scales.append(scaler.update(found_inf))
    return scales, found


def test_scale_sequence_equals_torch_grad_scaler():
    flags = [False] * 7 + [True, True] + [False] * 4 + [True] + [False] * 6
    config = dict(init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    torch_scales, stepped = run_torch_grad_scaler(flags, **config)
    our_scales, found = run_ours(flags, **config)
    assert our_scales == torch_scales
    assert found == flags and stepped == [not f for f in flags]  # torch skipped exactly those steps


def test_unscale_divides_gradients_by_the_scale():
    scaler = DynamicLossScaler(init_scale=8.0)
    grads = [torch.tensor([8.0, -16.0]), None]
    assert scaler.unscale_and_check(grads) is False
    torch.testing.assert_close(grads[0], torch.tensor([1.0, -2.0]))
    assert scaler.unscale_and_check([torch.tensor([math.nan])]) is True


def test_loss_scaler_rejects_bad_settings():
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
        DynamicLossScaler(init_scale=0)
    with pytest.raises(ValueError, match="growth_factor must be > 1"):
        DynamicLossScaler(growth_factor=1.0)
    with pytest.raises(ValueError, match=r"backoff_factor must be in \(0, 1\)"):
        DynamicLossScaler(backoff_factor=1.5)
    with pytest.raises(ValueError, match="growth_interval must be an int >= 1"):
        DynamicLossScaler(growth_interval=0)
    with pytest.raises(TypeError, match="found_inf must be a bool"):
        DynamicLossScaler().update(torch.tensor(True))


def test_small_gradients_underflow_in_fp16_unless_scaled():
    grads = torch.full((1000,), 1e-8)
    assert numerics.underflow_fraction(grads) == 1.0
    assert numerics.underflow_fraction(grads, scale=2.0**16) == 0.0
    assert numerics.underflow_fraction(grads, dtype=torch.bfloat16) == 0.0  # bf16 has fp32's range
    mixed = torch.tensor([0.0, 1e-8, 1e-3, 1e-9])
    assert numerics.underflow_fraction(mixed) == pytest.approx(2 / 3)
    assert numerics.underflow_fraction(torch.zeros(5)) == 0.0
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        numerics.underflow_fraction(grads, scale=-1.0)


def test_cast_fractions_sort_every_value_into_one_outcome():
    grads = torch.exp(torch.randn(20_000, generator=torch.Generator().manual_seed(0)) * 6)  # 1e-15 .. 1e15
    out = numerics.cast_fractions(grads, torch.float16)
    cast = grads.half()
    tiny = torch.finfo(torch.float16).smallest_normal
    n = len(grads)
    assert out["underflow"] == int((cast == 0).sum()) / n
    assert out["overflow"] == int(torch.isinf(cast).sum()) / n
    assert out["subnormal"] == int(((cast != 0) & (cast.abs() < tiny)).sum()) / n
    assert min(out.values()) > 0, "the test data reaches all three outcomes"
    assert numerics.cast_fractions(grads, torch.float32)["overflow"] == 0.0
    with pytest.raises(ValueError, match="scale"):
        numerics.cast_fractions(grads, scale=-1.0)
