"""companion.roofline: FLOP and byte counts equal hand arithmetic, the roofline is the minimum of its
two roofs with the ridge where they meet, GPU roofs come from batchsim's datasheet table, and every
measurement returns positive finite numbers at small sizes (no timing thresholds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion import roofline as rl
from companion.batchsim import GPUS


def test_matmul_cost_by_hand():
    c = rl.matmul_cost(2, 3, 4)  # (2, 4) @ (4, 3)
    assert c.flops == 2 * 2 * 3 * 4 == 48
    assert c.bytes == (2 * 4 + 4 * 3 + 2 * 3) * 4 == 104
    assert c.intensity == pytest.approx(48 / 104)
    assert rl.matmul_cost(2, 3, 4, "fp16").bytes == 52 and rl.matmul_cost(2, 3, 4, "int8").bytes == 26
    n = 4096  # a square matmul's intensity is 2n³ / (3n² · bytes) = n / 6 in fp32
    assert rl.matmul_cost(n, n, n).intensity == pytest.approx(n / 6)


def test_gemv_cost_is_about_two_flops_per_weight_read():
    c = rl.gemv_cost(4096, 4096, batch=1, dtype="fp16")
    assert c.flops == 2 * 4096 * 4096
    assert c.bytes == (4096 * 4096 + 4096 + 4096) * 2
    assert 0.99 < c.intensity < 1.0  # ≈ 1 FLOP/byte in fp16, not the 2 some notes quote
    c128 = rl.gemv_cost(4096, 4096, batch=128, dtype="fp16")
    assert c128.flops == 128 * c.flops
    assert c128.intensity == pytest.approx(2 * 128 * 4096**2 / ((4096**2 + 128 * 8192) * 2))
    assert 110 < c128.intensity < 128  # batch 128 -> ≈ 128 FLOP/byte (less the activations), not 256
    assert c.name == "decode matvec" and c128.name == "batched matvec"


def test_softmax_layernorm_gelu_costs_by_hand():
    s = rl.softmax_cost(3, 5)
    assert (s.flops, s.bytes) == (5 * 15, 2 * 15 * 4)
    ln = rl.layernorm_cost(3, 5, "bf16")
    assert (ln.flops, ln.bytes) == (7 * 15, (2 * 15 + 2 * 5) * 2)
    g = rl.gelu_cost(10)
    assert (g.flops, g.bytes) == (90, 80)
    for c in (s, ln, g):  # elementwise and row-wise ops sit far below any ridge point
        assert c.intensity < 2


@pytest.mark.parametrize("t,d", [(8, 4), (256, 64), (1024, 128)])
def test_attention_cost_naive_and_fused_by_hand(t, d):
    naive = rl.attention_cost(t, d, heads=2, batch=3)
    fused = rl.attention_cost(t, d, heads=2, batch=3, fused=True)
    flops = 6 * (2 * t * t * d + 2 * t * t * d + 5 * t * t)  # QKᵀ, PV, softmax, for 6 (batch, head) pairs
    assert naive.flops == fused.flops == flops
    assert naive.bytes == 6 * (4 * t * d + 4 * t * t) * 4  # Q, K, V, O plus S written, S read, P written, P read
    assert fused.bytes == 6 * 4 * t * d * 4
    assert fused.intensity > naive.intensity
    # fused intensity grows linearly with T; naive saturates near d (the T² terms dominate both)
    assert fused.intensity == pytest.approx((4 * t * d + 5 * t) / (16 * d))


def test_naive_attention_intensity_saturates_while_fused_keeps_growing():
    naive = [rl.attention_cost(t, 64).intensity for t in (512, 2048, 8192, 32768)]
    fused = [rl.attention_cost(t, 64, fused=True).intensity for t in (512, 2048, 8192, 32768)]
    assert all(np.diff(naive) > 0) and naive[-1] < (4 * 64 + 5) / 16  # bounded by (4d + 5) / 16
    assert fused[-1] / fused[0] == pytest.approx(64)


def test_bad_sizes_and_dtypes():
    with pytest.raises(ValueError, match="m must be an int >= 1, got 0"):
        rl.matmul_cost(0, 2, 2)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        rl.matmul_cost(2, 2, 2.5)
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        rl.gemv_cost(8, 8, batch=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        rl.softmax_cost(2, 2, "fp8")
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        rl.attention_cost(-1, 64)
    with pytest.raises(ValueError, match="rows must be an int >= 1"):
        rl.layernorm_cost(True, 4)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        rl.gelu_cost(0)


def test_ridge_point_and_attainable_are_the_minimum_of_two_roofs():
    roof = rl.Roofline("toy", peak_flops=100e9, bandwidth=20e9)
    assert roof.ridge_point == 5.0
    intensity = np.array([0.0, 0.5, 1.0, 5.0, 10.0, 1000.0])
    np.testing.assert_allclose(roof.attainable(intensity), [0, 10e9, 20e9, 100e9, 100e9, 100e9])
    assert roof.attainable(2.0) == 40e9 and isinstance(roof.attainable(2.0), float)
    xs = np.geomspace(1e-3, 1e4, 200)
    ys = roof.attainable(xs)
    assert np.all(np.diff(ys) >= 0) and np.all(ys <= roof.peak_flops) and np.all(ys <= roof.bandwidth * xs * (1 + 1e-12))
    assert roof.bound(4.9) == "memory" and roof.bound(5.0) == "compute"
    with pytest.raises(ValueError, match="intensity must be finite and >= 0"):
        roof.attainable(-1.0)
    with pytest.raises(ValueError, match="intensity"):
        roof.attainable(float("nan"))


def test_roofline_seconds_and_the_memory_wall():
    roof = rl.Roofline("toy", 100e9, 20e9)
    mem = rl.OpCost("gemv", "", flops=1e9, bytes=4e9)  # 0.2 s on bandwidth, 0.01 s on compute
    comp = rl.OpCost("gemm", "", flops=5e9, bytes=1e8)  # 0.05 s on compute
    assert roof.seconds([mem, comp]) == pytest.approx(0.2 + 0.05)
    faster = roof.scaled(flops=5.0)
    assert faster.peak_flops == 500e9 and faster.bandwidth == 20e9 and faster.ridge_point == 25
    # Amdahl on the roofline: 5× the FLOP/s speeds up only the compute-bound part
    assert roof.seconds([mem, comp]) / faster.seconds([mem, comp]) == pytest.approx(0.25 / (0.2 + 0.01))


def test_bad_rooflines():
    for kw in (dict(peak_flops=0, bandwidth=1), dict(peak_flops=1, bandwidth=-2), dict(peak_flops=math.inf, bandwidth=1)):
        with pytest.raises(ValueError, match="must be a finite number > 0"):
            rl.Roofline("bad", **kw)
    with pytest.raises(ValueError, match="gpu must be one of"):
        rl.Roofline.from_gpu("V100")
    with pytest.raises(ValueError, match="dtype must be one of"):
        rl.Roofline.from_gpu("A100-80GB", "fp8")


def test_gpu_rooflines_come_from_the_batchsim_table():
    for gpu, (peaks, bandwidth) in GPUS.items():
        for dtype, peak in peaks.items():
            roof = rl.Roofline.from_gpu(gpu, dtype)
            assert roof.peak_flops == peak and roof.bandwidth == bandwidth
            assert roof.ridge_point == pytest.approx(peak / bandwidth)
    assert rl.Roofline.from_gpu("A100-80GB").ridge_point == pytest.approx(312 / 2.039)  # ≈ 153 FLOP/byte
    assert rl.Roofline.from_gpu("H100-SXM", "bf16").ridge_point == pytest.approx(989 / 3.35)  # ≈ 295


def test_measured_roofs_are_positive_and_finite_at_small_sizes():
    peak = rl.measure_peak_flops(n=64, repeat=2)
    assert math.isfinite(peak) and peak > 0
    bw = rl.stream(n=4096, repeat=2)
    assert set(bw) == {"copy", "scale", "add", "triad"}
    assert all(math.isfinite(v) and v > 0 for v in bw.values())
    roof = rl.measure_roofline(matmul_n=64, stream_n=4096, repeat=2)
    assert roof.ridge_point > 0 and "1 thread" in roof.name
    with pytest.raises(ValueError, match="dtype must be one of"):
        rl.measure_peak_flops(64, dtype="int8")


def test_stream_kernels_compute_what_they_claim():
    n = 1000  # the kernels' results: run STREAM's triad by hand on the same arrays
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.rand(n, generator=g) for _ in range(3))
    torch.add(b, c, alpha=3.0, out=a)
    torch.testing.assert_close(a, b + 3.0 * c)


def test_bandwidth_sweep_returns_one_positive_rate_per_working_set():
    sweep = rl.bandwidth_sweep([1536, 12 * 1024, 96 * 1024], bytes_per_point=2**20, repeat=1)
    assert [ws for ws, _ in sweep] == [1536, 12 * 1024, 96 * 1024]
    assert all(math.isfinite(bw) and bw > 0 for _, bw in sweep)
    with pytest.raises(ValueError, match="at least 192 bytes"):
        rl.bandwidth_sweep([100])
    with pytest.raises(ValueError, match="working set must be an int >= 1"):
        rl.bandwidth_sweep([0])


def test_standard_ops_run_and_measure_to_positive_rates():
    ops = rl.standard_ops(d=32, rows=16, seq_lens=(8, 16), head_dim=4, heads=2, gemv_d=24)
    names = [c.name for c, _ in ops]
    assert names[:6] == ["matmul", "decode matvec", "batched matvec", "softmax", "layernorm", "gelu"]
    assert names.count("attention, naive") == names.count("attention, fused") == 2
    outs = {}
    for cost, fn in ops:
        m = rl.measure_op(cost, fn, repeat=1)
        assert m.seconds > 0 and math.isfinite(m.flops_per_s) and m.flops_per_s > 0 and m.bytes_per_s > 0
        assert m.flops_per_s / m.bytes_per_s == pytest.approx(cost.intensity)
        if cost.name.startswith("attention"):
            outs.setdefault(cost.shape, []).append(fn())
    assert len(outs) == 2
    for naive, fused in outs.values():  # the naive three-kernel path and SDPA compute the same attention
        torch.testing.assert_close(naive, fused, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cost must be an OpCost"):
        rl.measure_op("matmul", lambda: None)
