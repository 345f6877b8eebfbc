"""companion.batchsim and companion.data.request_trace: the trace has the documented distribution,
the metrics equal hand arithmetic, the roofline equals its formula, and the simulator agrees with
hand-worked schedules and with queueing theory (Lindley's recursion, M/D/1, Little's law)."""

from __future__ import annotations

import numpy as np
import pytest

from companion.batchsim import (
    CostModel, LatencyStats, LinearCost, RooflineCost, Span, latency_stats, littles_law, simulate,
)
from companion.data import RequestTrace, request_trace
from companion.kvcache import kv_bytes

ROOFLINE = CostModel.for_gpu("Llama-2-7B", "A100-80GB")


def fixed_trace(arrival, prompt, output, max_len=None) -> RequestTrace:
    prompt, output = np.asarray(prompt), np.asarray(output)
    return RequestTrace(np.asarray(arrival, float), prompt, output, max_len or int((prompt + output).max()))


# ---------------------------------------------------------------------------------------------
# The trace
# ---------------------------------------------------------------------------------------------


def test_request_trace_shapes_dtypes_and_bounds():
    trace = request_trace(5000, seed=1, max_len=64)
    assert len(trace) == 5000 and trace.max_len == 64
    assert trace.arrival.dtype == np.float64 and not trace.arrival.any()  # rate=None: all at t = 0
    for lengths in (trace.prompt_len, trace.output_len):
        assert lengths.dtype == np.int64 and lengths.shape == (5000,) and lengths.min() >= 1
    assert (trace.prompt_len + trace.output_len).max() <= 64


def test_request_trace_lengths_are_log_normal_with_the_given_median_and_sigma():
    trace = request_trace(40_000, seed=0, prompt_median=300, output_median=200, sigma=0.5, max_len=100_000)
    for lengths, median in ((trace.prompt_len, 300), (trace.output_len, 200)):
        assert np.median(lengths) == pytest.approx(median, rel=0.02)
        assert np.std(np.log(lengths)) == pytest.approx(0.5, rel=0.02)


def test_request_trace_resamples_long_pairs_instead_of_piling_them_at_the_cap():
    trace = request_trace(40_000, seed=0, prompt_median=24, output_median=32, sigma=1.0, max_len=64)
    total = trace.prompt_len + trace.output_len
    # a third of the untruncated pairs exceed 64; clipping would put them all at exactly 64
    assert np.mean(total == 64) < 1.5 * np.mean((total >= 60) & (total <= 63)) / 4
    # and what is kept is the log-normal conditioned on fitting: compare with rejection sampling by hand
    rng = np.random.default_rng(5)
    p = np.maximum(1, np.rint(24 * np.exp(rng.standard_normal(400_000))))
    o = np.maximum(1, np.rint(32 * np.exp(rng.standard_normal(400_000))))
    fits = p + o <= 64
    assert np.mean(trace.prompt_len) == pytest.approx(p[fits].mean(), rel=0.02)
    assert np.mean(trace.output_len) == pytest.approx(o[fits].mean(), rel=0.02)


def test_request_trace_arrivals_are_poisson_and_lengths_do_not_depend_on_the_rate():
    slow, fast = request_trace(20_000, seed=3, rate=2.0), request_trace(20_000, seed=3, rate=50.0)
    gaps = np.diff(fast.arrival)
    assert gaps.min() >= 0 and gaps.mean() == pytest.approx(1 / 50, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential gaps: CV = 1
    assert np.array_equal(slow.prompt_len, fast.prompt_len) and np.array_equal(slow.output_len, fast.output_len)
    again, other = request_trace(20_000, seed=3, rate=2.0), request_trace(20_000, seed=4, rate=2.0)
    assert np.array_equal(again.arrival, slow.arrival) and not np.array_equal(other.prompt_len, slow.prompt_len)


def test_request_trace_subset_keeps_arrival_order():
    trace = request_trace(10, seed=0, rate=1.0)
    part = trace.subset(np.array([7, 2, 5]))
    assert np.array_equal(part.arrival, trace.arrival[[2, 5, 7]]) and len(part) == 3
    assert np.array_equal(trace.subset(trace.prompt_len > 20).prompt_len, trace.prompt_len[trace.prompt_len > 20])


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be an int >= 1"),
    (dict(n=5, prompt_median=0), "prompt_median must be a finite number > 0"),
    (dict(n=5, output_median=-1.0), "output_median must be a finite number > 0"),
    (dict(n=5, sigma=-0.1), "sigma must be a finite number >= 0"),
    (dict(n=5, max_len=1), "max_len must be an int >= 2"),
    (dict(n=5, rate=0.0), "rate must be None"),
    (dict(n=5, prompt_median=500, output_median=500, sigma=0.1, max_len=64), "rarely fit max_len=64"),
])
def test_request_trace_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        request_trace(**kwargs)


def test_request_trace_class_validates_hand_built_traces():
    with pytest.raises(ValueError, match="non-decreasing"):
        fixed_trace([1.0, 0.0], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="output_len must hold integers >= 1"):
        fixed_trace([0.0, 0.0], [1, 1], [1, 0])
    with pytest.raises(ValueError, match="max_len must be an int >= the longest"):
        fixed_trace([0.0], [5], [5], max_len=9)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_latency_stats_equals_hand_arithmetic():
    stats = latency_stats([0.0, 1.0, 1.0], [[0.5, 0.6, 0.8], [1.5], [1.25, 2.0]])
    np.testing.assert_allclose(stats.ttft, [0.5, 0.5, 0.25])
    np.testing.assert_allclose(stats.e2e, [0.8, 0.5, 1.0])
    np.testing.assert_allclose(stats.itl, [0.1, 0.2, 0.75])
    np.testing.assert_allclose(stats.tpot, [0.15, 0.75])  # request 1 has one token: no TPOT
    assert stats.duration == 2.0 and stats.tokens_per_s == 3.0 and stats.requests_per_s == 1.5
    assert stats.percentile("itl", 50) == pytest.approx(0.2)
    assert stats.percentile("e2e", 90) == pytest.approx(np.percentile([0.8, 0.5, 1.0], 90))
    summary = stats.summary()
    assert summary["ttft_p99"] == pytest.approx(np.percentile([0.5, 0.5, 0.25], 99)) and summary["tokens_per_s"] == 3.0
    assert len(summary) == 4 * 3 + 3


def test_latency_stats_with_only_one_token_outputs_has_no_itl():
    stats = latency_stats([0.0, 0.0], [[1.0], [2.0]])
    assert len(stats.itl) == 0 and np.isnan(stats.percentile("itl", 50)) and np.isnan(stats.percentile("tpot", 50))


@pytest.mark.parametrize("arrival, times, match", [
    ([0.0, 1.0], [[1.0]], "token_times has 1 requests but arrival has 2"),
    ([0.0], [[]], "request 0 has no output tokens"),
    ([0.0, 2.0], [[1.0], [1.5]], "request 1 has a token at 1.5 before its arrival at 2.0"),
    ([0.0], [[1.0, 0.5]], "go back in time"),
    ([], [], "non-empty"),
])
def test_latency_stats_rejects_bad_input(arrival, times, match):
    with pytest.raises(ValueError, match=match):
        latency_stats(arrival, times)
    with pytest.raises(ValueError, match="name must be one of"):
        LatencyStats.percentile(latency_stats([0.0], [[1.0]]), "latency", 50)


def test_littles_law_on_a_hand_worked_timeline():
    # N(t) = 1, 2, 3, 2, 1 on [0,1), [1,2), [2,3), [3,5), [5,6): area 1 + 2 + 3 + 4 + 1 = 11 over 6 s
    # sojourns 3, 4, 4: λ·W = 3/6 · 11/3
    L, lam_w = littles_law([0, 1, 2], [3, 5, 6])
    assert L == pytest.approx(11 / 6) and lam_w == pytest.approx(11 / 6)
    assert littles_law([0, 0], [0, 0]) == (0.0, 0.0)


def test_littles_law_sides_agree_on_random_timelines_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        arrival = np.sort(rng.integers(0, 50, size=200)).astype(float)  # integer times: many ties
        finish = arrival + rng.integers(0, 30, size=200)
        L, lam_w = littles_law(arrival, finish)
        window = finish.max() - arrival.min()
        in_system = [np.sum((arrival <= t) & (t < finish)) for t in np.arange(arrival.min(), finish.max())]
        assert L == pytest.approx(np.sum(in_system) / window, rel=1e-12)  # N(t) summed on the unit grid
        assert lam_w == pytest.approx(L, rel=1e-12)


def test_littles_law_rejects_bad_input():
    with pytest.raises(ValueError, match="one length"):
        littles_law([0, 1], [2])
    with pytest.raises(ValueError, match="request 1 finishes before it arrives"):
        littles_law([0, 3], [2, 2])


def test_span_rejects_unknown_kinds_and_reversed_times():
    with pytest.raises(ValueError, match="kind must be one of"):
        Span(0, 0.0, 1.0, "running")
    with pytest.raises(ValueError, match="end at or after its start"):
        Span(0, 2.0, 1.0, "decode")


# ---------------------------------------------------------------------------------------------
# Cost models
# ---------------------------------------------------------------------------------------------


def test_roofline_numbers_come_from_the_model_card_and_the_datasheet():
    assert ROOFLINE.kv_bytes_per_token == kv_bytes("Llama-2-7B", 1) == 2 * 32 * 32 * 128 * 2
    assert ROOFLINE.weight_bytes == 2 * 6.74e9
    assert ROOFLINE.ridge_point == pytest.approx(153, abs=0.5)  # 312 TFLOP/s / 2.039 TB/s
    assert CostModel.for_gpu("Llama-2-7B", "H100-SXM").ridge_point == pytest.approx(295, abs=1)
    decode = ROOFLINE.step_seconds(0, 4, 4 * 100)  # bytes: weights + KV read (400 tokens) + KV written (4)
    assert decode == pytest.approx((2 * 6.74e9 + 524288 * 404) / 2.039e12, rel=1e-12)


def test_decode_is_bandwidth_bound_so_batching_it_is_nearly_free():
    one = ROOFLINE.step_seconds(0, 1, 32)
    many = ROOFLINE.step_seconds(0, 32, 32 * 32)
    assert many == pytest.approx(one, rel=0.05)  # the extra is the 32 sequences' KV reads
    assert one / (many / 32) > 30  # seconds per token fall ~32x
    assert 2 * ROOFLINE.n_params * 32 / ROOFLINE.peak_flops < ROOFLINE.weight_bytes / ROOFLINE.bandwidth


def test_prefill_of_2048_tokens_is_compute_bound():
    t = ROOFLINE.step_seconds(2048, 0, 0)
    assert t == pytest.approx(2 * 6.74e9 * 2048 / 312e12, rel=1e-12)  # FLOPs / peak, about 88 ms
    assert (ROOFLINE.weight_bytes + 2048 * ROOFLINE.kv_bytes_per_token) / ROOFLINE.bandwidth < t / 5


def test_step_seconds_broadcasts_over_arrays():
    p, d, c = np.array([0, 512, 0]), np.array([8, 0, 64]), np.array([800, 0, 6400])
    for cost in (ROOFLINE, LinearCost(1e-3, 2e-5, 3e-4, 1e-7)):
        np.testing.assert_allclose(cost.step_seconds(p, d, c), [cost.step_seconds(*map(int, x)) for x in zip(p, d, c)])


def test_fit_recovers_the_coefficients_of_a_linear_engine():
    true = LinearCost(overhead=2e-3, per_prefill_token=5e-5, per_decode_seq=4e-4, per_context_token=2e-7)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(60):
        p, d, c = int(rng.integers(0, 512)), int(rng.integers(0, 32)), int(rng.integers(0, 20_000))
        rows.append((p, d, c, true.step_seconds(p, d, c) * (1 + 1e-4 * rng.standard_normal())))
    fitted = CostModel.fit(rows)
    for name in ("overhead", "per_prefill_token", "per_decode_seq", "per_context_token"):
        assert getattr(fitted, name) == pytest.approx(getattr(true, name), rel=0.02), name


def test_fit_keeps_coefficients_non_negative():
    # time falls with context in this (unphysical) data: least squares would give a negative slope
    rows = [(p, 1, c, 1e-3 + 1e-5 * p - 1e-8 * c) for p in (0, 100, 200) for c in (0, 1000, 2000)]
    fitted = CostModel.fit(rows)
    assert fitted.per_context_token == 0.0 and fitted.per_prefill_token > 0


@pytest.mark.parametrize("call, match", [
    (lambda: CostModel.for_gpu("GPT-5"), "model must be one of"),
    (lambda: CostModel.for_gpu("Llama-2-7B", "RTX-4090"), "gpu must be one of"),
    (lambda: CostModel.for_gpu("Llama-2-7B", dtype="fp8"), "dtype must be one of"),
    (lambda: CostModel.fit([(1, 1, 1, 1.0)] * 3), "at least 4 rows"),
    (lambda: CostModel.fit([(1, 1, 1)] * 5), r"rows must be \(prefill_tokens"),
    (lambda: ROOFLINE.step_seconds(-1, 0, 0), "prefill_tokens must be >= 0"),
    (lambda: ROOFLINE.step_seconds(0, np.array([0.5]), 0), "decode_seqs must be integers >= 0"),
    (lambda: LinearCost(overhead=-1.0), "overhead must be a finite number >= 0"),
    (lambda: RooflineCost(1e9, 2e9, 1.0, 0.0, 1e12), "peak_flops must be a finite number > 0"),
])
def test_cost_models_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------

HAND = fixed_trace([0.0, 0.0, 0.0], prompt=[2, 3, 1], output=[1, 3, 2])
HAND_COST = LinearCost(per_prefill_token=1.0, per_decode_seq=0.5)  # 1 s per prompt token, 0.5 s per decode


def test_static_batching_on_a_hand_worked_schedule():
    # batch {0, 1}: prefill 2 x 3 padded tokens (6 s), two decode steps of 2 slots (1 s each);
    # request 0 finished at 6 but holds its slot to 8. Then {2}: prefill 1 s, one decode 0.5 s.
    result = simulate(HAND, "static", HAND_COST, max_batch=2)
    assert [t.tolist() for t in result.token_times] == [[6.0], [6.0, 7.0, 8.0], [9.0, 9.5]]
    assert result.steps.context_tokens.tolist() == [0, 6, 8, 0, 1]  # decode k reads 2 x (3 + k - 1)
    assert [(s.request, s.start, s.end, s.kind) for s in result.spans] == [
        (0, 0.0, 6.0, "prefill"), (0, 6.0, 8.0, "held"), (1, 0.0, 6.0, "prefill"), (1, 6.0, 8.0, "decode"),
        (2, 0.0, 8.0, "queued"), (2, 8.0, 9.0, "prefill"), (2, 9.0, 9.5, "decode")]
    # useful slots over time: (2·6 + 1·1 + 1·1 + 1·1 + 1·0.5) / (2 · 9.5)
    assert result.utilization == pytest.approx(15.5 / 19)


def test_continuous_batching_on_a_hand_worked_schedule():
    # step 1: prefill 2 + 3 = 5 s, request 0 done; step 2: request 2 joins, prefill 1 + decode 1 = 1.5 s;
    # step 3: two decodes, 1 s
    result = simulate(HAND, "continuous", HAND_COST, max_batch=2)
    assert [t.tolist() for t in result.token_times] == [[5.0], [5.0, 6.5, 7.5], [6.5, 7.5]]
    assert result.steps.prefill_tokens.tolist() == [5, 1, 0] and result.steps.decode_seqs.tolist() == [0, 1, 2]
    assert result.steps.context_tokens.tolist() == [0, 3, 5]
    assert not [s for s in result.spans if s.kind == "held"] and result.utilization == 1.0


POISSON = request_trace(400, seed=2, prompt_median=64, output_median=48, sigma=1.0, max_len=1024, rate=40.0)
OPTIONS = {
    "static": dict(policy="static"),
    "dynamic": dict(policy="dynamic", max_wait=0.05),
    "continuous": dict(policy="continuous"),
    "budget": dict(policy="continuous", token_budget=int(POISSON.prompt_len.max())),
    "chunked": dict(policy="continuous", token_budget=64, chunked_prefill=True),
    "kv-limited": dict(policy="continuous", kv_capacity_tokens=2048),
    "kv-limited static": dict(policy="static", kv_capacity_tokens=2048),
}


@pytest.mark.parametrize("name", OPTIONS)
def test_every_request_gets_exactly_its_tokens_and_littles_law_holds(name):
    result = simulate(POISSON, cost=ROOFLINE, max_batch=8, **OPTIONS[name])
    assert [len(t) for t in result.token_times] == POISSON.output_len.tolist()
    assert all(t[0] > a and np.all(np.diff(t) > 0) for t, a in zip(result.token_times, POISSON.arrival))
    assert np.array_equal(result.finish, [t[-1] for t in result.token_times])
    L, lam_w = result.little
    assert L == pytest.approx(lam_w, rel=1e-9) and L > 0
    assert 0 < result.utilization <= 1 and result.steps.running.max() <= 8
    assert np.all(result.steps.start[1:] >= result.steps.end[:-1] - 1e-12)  # one step at a time
    for i in (0, 137, 399):  # the spans tile [arrival, batch end] with no gap
        spans = [s for s in result.spans if s.request == i]
        assert spans[0].start == POISSON.arrival[i] and all(a.end == b.start for a, b in zip(spans, spans[1:]))


def test_static_and_continuous_agree_with_one_slot():
    for policy in ("static", "dynamic"):
        one = simulate(POISSON, policy, ROOFLINE, max_batch=1, max_wait=1.0)
        other = simulate(POISSON, "continuous", ROOFLINE, max_batch=1)
        for a, b in zip(one.token_times, other.token_times):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_dynamic_with_no_wait_is_static():
    a, b = simulate(POISSON, "dynamic", ROOFLINE, max_wait=0.0), simulate(POISSON, "static", ROOFLINE)
    assert all(np.array_equal(x, y) for x, y in zip(a.token_times, b.token_times))


def test_dynamic_batching_launches_when_full_or_when_the_oldest_has_waited():
    trace = fixed_trace(np.arange(10) * 1.0, [4] * 10, [2] * 10)
    cost = LinearCost(overhead=0.01)
    batches = simulate(trace, "dynamic", cost, max_batch=4, max_wait=100.0).steps
    launches = batches.start[batches.prefill_tokens > 0]
    # full at the 4th and 8th arrival; the last two never fill a batch and go after 100 s of waiting
    np.testing.assert_allclose(launches, [3.0, 7.0, 108.0])
    launches = (r := simulate(trace, "dynamic", cost, max_batch=4, max_wait=1.5)).steps
    np.testing.assert_allclose(launches.start[launches.prefill_tokens > 0], [1.5, 3.5, 5.5, 7.5, 9.5])
    assert max(s.end - s.start for s in r.spans if s.kind == "queued") == pytest.approx(1.5)


def test_continuous_beats_static_and_more_so_when_lengths_vary():
    ratios = []
    for sigma in (0.3, 1.0):
        trace = request_trace(300, seed=0, prompt_median=64, output_median=64, sigma=sigma, max_len=2048)
        static = simulate(trace, "static", ROOFLINE, max_batch=16)
        continuous = simulate(trace, "continuous", ROOFLINE, max_batch=16)
        assert continuous.utilization > static.utilization
        ratios.append(continuous.stats.tokens_per_s / static.stats.tokens_per_s)
    assert 1.2 < ratios[0] < ratios[1]


def test_single_server_waiting_times_follow_lindleys_recursion():
    # one slot, one token per request, every step 1 s: W_{k+1} = max(0, W_k + 1 − (a_{k+1} − a_k))
    n = 2000
    arrival = request_trace(n, seed=0, rate=0.8).arrival
    result = simulate(fixed_trace(arrival, [1] * n, [1] * n), "continuous", LinearCost(overhead=1.0), max_batch=1)
    wait = np.zeros(n)
    for k in range(1, n):
        wait[k] = max(0.0, wait[k - 1] + 1.0 - (arrival[k] - arrival[k - 1]))
    np.testing.assert_allclose(result.stats.ttft - 1.0, wait, atol=1e-9)


def test_mean_wait_with_constant_service_matches_md1_theory():
    # M/D/1 with service 1 s and load ρ: W_q = ρ / (2 μ (1 − ρ)) = 0.5 s at ρ = 0.5
    n, rho = 40_000, 0.5
    arrival = request_trace(n, seed=0, rate=rho).arrival
    result = simulate(fixed_trace(arrival, [1] * n, [1] * n), "static", LinearCost(overhead=1.0), max_batch=1)
    assert np.mean(result.stats.ttft - 1.0) == pytest.approx(rho / (2 * (1 - rho)), rel=0.05)  # ~2.5 standard errors


def test_token_budget_caps_every_step_and_chunked_prefill_keeps_decodes_flowing():
    long_prompts = request_trace(200, seed=1, prompt_median=400, output_median=64, sigma=1.0, max_len=4096, rate=20.0)
    longest = int(long_prompts.prompt_len.max())
    whole = simulate(long_prompts, "continuous", ROOFLINE, max_batch=16, token_budget=longest)
    chunked = simulate(long_prompts, "continuous", ROOFLINE, max_batch=16, token_budget=256, chunked_prefill=True)
    assert (chunked.steps.prefill_tokens + chunked.steps.decode_seqs).max() <= 256
    assert (whole.steps.prefill_tokens + whole.steps.decode_seqs).max() <= longest
    # a whole long prompt in one step stalls every decode running beside it (Sarathi-Serve's point)
    assert chunked.stats.percentile("itl", 99) < 0.5 * whole.stats.percentile("itl", 99)


def test_kv_capacity_bounds_what_is_admitted():
    capacity = 1500
    result = simulate(POISSON, "continuous", ROOFLINE, max_batch=64, kv_capacity_tokens=capacity)
    first = np.array([next(s.start for s in result.spans if s.request == i and s.kind == "prefill")
                      for i in range(len(POISSON))])
    need = POISSON.prompt_len + POISSON.output_len
    held = [need[(first <= t) & (t < result.finish)].sum() for t in result.steps.start]
    assert max(held) <= capacity < need.sum()
    free = simulate(POISSON, "continuous", ROOFLINE, max_batch=64)
    assert free.stats.percentile("e2e", 50) < result.stats.percentile("e2e", 50)


@pytest.mark.parametrize("kwargs, match", [
    (dict(policy="fifo"), "policy must be one of"),
    (dict(max_batch=0), "max_batch must be an int >= 1"),
    (dict(max_wait=-1.0), "max_wait must be a finite number"),
    (dict(token_budget=0), "token_budget must be None or an int >= 1"),
    (dict(token_budget=2), "below the longest prompt"),
    (dict(kv_capacity_tokens=3), "kv_capacity_tokens must be None or an int >= the largest"),
    (dict(cost=object()), "cost must have a step_seconds"),
    (dict(trace=[1, 2, 3]), "trace must be a RequestTrace"),
])
def test_simulate_rejects_bad_arguments(kwargs, match):
    args = dict(trace=HAND, policy="continuous", cost=HAND_COST) | kwargs
    with pytest.raises(ValueError, match=match):
        simulate(**args)
