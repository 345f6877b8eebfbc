"""companion.serving: the continuous-batching engine gives exactly the tokens of one-at-a-time generation."""

from __future__ import annotations

import pytest
import torch

from companion import kvcache
from companion.decoding import SamplingConfig
from companion.model import GPTConfig, MiniGPT, to_hf_gpt2
from companion.serving import GREEDY, Engine, EngineConfig, Request

CONFIGS = {
    "gpt2": {},
    "llama-style": {"positions": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "bias": False},
}


def model_of(options: dict | None = None, seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=4, n_embd=32, **(options or {}))).eval()


def requests_of(n: int, seed: int = 0, shared_prefix: int = 0) -> list[Request]:
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 61, (shared_prefix,), generator=g).tolist()
    out = []
    for _ in range(n):
        prompt = prefix + torch.randint(0, 61, (int(torch.randint(1, 20, (1,), generator=g)),), generator=g).tolist()
        out.append(Request(prompt, int(torch.randint(1, 25, (1,), generator=g))))
    return out


def one_at_a_time(model: MiniGPT, requests: list[Request]) -> list[list[int]]:
    outputs = []
    for r in requests:
        g = None if r.seed is None else torch.Generator().manual_seed(r.seed)
        ids = kvcache.generate(model, torch.tensor([list(r.prompt)]), r.max_new_tokens, r.sampling, generator=g)
        outputs.append(ids[0, len(r.prompt):].tolist())
    return outputs


@pytest.mark.parametrize("name", CONFIGS)
def test_batched_greedy_equals_one_request_at_a_time(name):
    model = model_of(CONFIGS[name])
    requests = requests_of(12)
    engine = Engine(model, EngineConfig(num_blocks=64, block_size=4, max_num_seqs=8, max_batched_tokens=32))
    assert engine.run(requests) == one_at_a_time(model, requests)
    assert max(s.running for s in engine.steps) > 1  # it really batched
    assert any(s.prefill_tokens and s.decode_tokens for s in engine.steps)  # and mixed prefill with decode


def test_chunked_prefill_splits_long_prompts_and_changes_nothing():
    model = model_of()
    requests = [Request(list(range(40)), 10), Request(list(range(5, 35)), 12), Request([3, 1, 4], 20)]
    engine = Engine(model, EngineConfig(num_blocks=64, block_size=4, max_batched_tokens=8))
    assert engine.run(requests) == one_at_a_time(model, requests)
    assert all(s.prefill_tokens + s.decode_tokens <= 8 for s in engine.steps)
    assert sum(1 for s in engine.steps if s.prefill_tokens) >= 40 // 8  # the long prompt took several steps


def test_without_chunking_a_prompt_over_budget_waits_for_an_empty_step():
    model = model_of()
    requests = [Request([1, 2], 6), Request(list(range(30)), 3)]
    engine = Engine(model, EngineConfig(num_blocks=64, block_size=4, max_batched_tokens=30, chunked_prefill=False))
    assert engine.run(requests) == one_at_a_time(model, requests)


def test_preemption_by_recompute_loses_nothing_and_changes_nothing():
    model = model_of()
    requests = requests_of(10, seed=1)
    # 12 blocks of 4 tokens cannot hold ten sequences of up to 43 tokens: sequences must be preempted
    engine = Engine(model, EngineConfig(num_blocks=12, block_size=4, max_num_seqs=10, max_batched_tokens=64))
    outputs = engine.run(requests)
    assert sum(s.preempted for s in engine.steps) > 0
    assert outputs == one_at_a_time(model, requests)
    assert [len(o) for o in outputs] == [r.max_new_tokens for r in requests]
    assert engine.cache.allocator.num_used == 0  # every block returned


def test_sampled_requests_keep_their_own_seeds_and_parameters():
    model = model_of()
    base = requests_of(6, seed=2)
    configs = [SamplingConfig(temperature=0.8, top_k=10), SamplingConfig(top_p=0.9), GREEDY,
               SamplingConfig(temperature=1.3, repetition_penalty=1.2), SamplingConfig(min_p=0.05), GREEDY]
    requests = [Request(r.prompt, r.max_new_tokens, c, seed=100 + i) for i, (r, c) in enumerate(zip(base, configs))]
    engine = Engine(model, EngineConfig(num_blocks=64, block_size=4))
    assert engine.run(requests) == one_at_a_time(model, requests)


def test_prefix_caching_serves_a_shared_system_prompt_from_the_pool():
    model = model_of()
    requests = requests_of(8, seed=3, shared_prefix=24)
    cached = Engine(model, EngineConfig(num_blocks=96, block_size=4, max_num_seqs=2))
    plain = Engine(model, EngineConfig(num_blocks=96, block_size=4, max_num_seqs=2, prefix_caching=False))
    assert cached.run(requests) == plain.run(requests) == one_at_a_time(model, requests)
    hits = sum(s.cached_tokens for s in cached.sequences.values())
    assert hits >= 6 * 24 and sum(s.cached_tokens for s in plain.sequences.values()) == 0
    assert sum(s.prefill_tokens for s in cached.steps) < sum(s.prefill_tokens for s in plain.steps) - 6 * 20


def test_stop_token_and_streaming_callback():
    model = model_of()
    free_run = one_at_a_time(model, [Request([5, 6, 7], 20)])[0]
    stop = free_run[4]
    streamed = []
    engine = Engine(model, on_token=lambda seq, token: streamed.append((seq, token)))
    out = engine.run([Request([5, 6, 7], 20, stop_token=stop)])[0]
    assert out == free_run[:free_run.index(stop) + 1]
    assert streamed == [(0, t) for t in out]
    assert len(engine.sequences[0].token_times) == len(out)


def test_matches_hugging_face_static_batching_on_the_same_weights():
    model = model_of()
    requests = requests_of(6, seed=4)
    hf = to_hf_gpt2(model)
    width = max(len(r.prompt) for r in requests)
    prompts = torch.tensor([[0] * (width - len(r.prompt)) + list(r.prompt) for r in requests])  # left padding
    mask = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in requests])
    theirs = hf.generate(prompts, attention_mask=mask, max_new_tokens=max(r.max_new_tokens for r in requests),
                         do_sample=False, pad_token_id=0)
    expected = [theirs[i, width:width + r.max_new_tokens].tolist() for i, r in enumerate(requests)]
    assert Engine(model, EngineConfig(num_blocks=64, block_size=4)).run(requests) == expected


def test_bad_requests_and_configs_are_refused_clearly():
    model = model_of()
    engine = Engine(model, EngineConfig(num_blocks=4, block_size=4))
    with pytest.raises(ValueError, match="non-empty sequence of int"):
        engine.add_request(Request([], 3))
    with pytest.raises(ValueError, match=r"in \[0, vocab_size=61\)"):
        engine.add_request(Request([61], 3))
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 1"):
        engine.add_request(Request([1], 0))
    with pytest.raises(ValueError, match="exceeds the model's block_size=64"):
        engine.add_request(Request([1] * 60, 5))
    with pytest.raises(ValueError, match="the whole pool holds 16"):
        engine.add_request(Request([1] * 10, 10))
    with pytest.raises(ValueError, match="must be a serving.Request"):
        engine.add_request(([1], 3))
    with pytest.raises(ValueError, match="must be a decoding.SamplingConfig"):
        engine.add_request(Request([1], 3, sampling="greedy"))
    with pytest.raises(ValueError, match="temperature must be > 0 when sampling"):
        engine.add_request(Request([1], 3, sampling=SamplingConfig(temperature=0.0)))
    with pytest.raises(ValueError, match=r"stop_token must be in \[0, vocab_size=61\)"):
        engine.add_request(Request([1], 3, stop_token=99))
    with pytest.raises(ValueError, match="seed must be an int or None"):
        engine.add_request(Request([1], 3, seed=1.5))
    with pytest.raises(ValueError, match="max_num_seqs must be an int >= 1"):
        EngineConfig(max_num_seqs=0)


def test_metrics_spans_and_utilization_describe_the_run():
    from companion.serving import serve

    model = model_of()
    requests = [Request(r.prompt, r.max_new_tokens, arrival=0.002 * i) for i, r in enumerate(requests_of(8, seed=5))]
    engine = Engine(model, EngineConfig(num_blocks=10, block_size=4, max_num_seqs=4, max_batched_tokens=16))
    assert serve(engine, requests) == one_at_a_time(model, requests)
    stats = engine.latency()
    assert len(stats.ttft) == 8 and (stats.ttft > 0).all() and (stats.e2e >= stats.ttft).all()
    assert len(stats.itl) == sum(r.max_new_tokens - 1 for r in requests)
    times, used = engine.kv_utilization()
    assert len(times) == len(engine.steps) and max(used) <= 1.0 and max(used) > 0.5
    spans = engine.spans()
    kinds = {s.kind for s in spans}
    assert {"queued", "prefill", "decode"} <= kinds
    if any(s.preempted for s in engine.steps):
        assert "preempted" in kinds
    for seq_id, seq in engine.sequences.items():  # each request's spans tile its life, in order
        own = [s for s in spans if s.request == seq_id]
        assert all(a.end <= b.start + 1e-9 for a, b in zip(own, own[1:]))
        t0 = min(s.arrival_time for s in engine.sequences.values())
        assert own[-1].end == pytest.approx(seq.token_times[-1] - t0, abs=5e-3)
    with pytest.raises(ValueError, match="no request has finished"):
        Engine(model).latency()


def test_static_run_spans_and_latency_from_hand_made_times():
    from companion.serving import StaticRun

    # arrival at t = 10 s. Batch 1 (requests 0, 1) starts at 10.5 s and makes its last token at 13.5 s;
    # batch 2 (requests 2, 3) starts at 13.6 s, its last token at 15 s
    run = StaticRun(outputs=[[1, 2, 3, 4], [5], [6, 7], [8, 9, 10]], arrival_time=10.0,
                    token_times=[[11.0, 12.0, 13.0, 13.5], [11.0], [14.0, 14.5], [14.0, 14.5, 15.0]],
                    batches=[(10.5, 13.55, [0, 1]), (13.6, 15.05, [2, 3])])
    spans = {(s.request, s.kind): (s.start, s.end) for s in run.spans()}
    expected = {
        (0, "queued"): (0.0, 0.5), (0, "prefill"): (0.5, 1.0), (0, "decode"): (1.0, 3.5),  # the longest: never held
        (1, "queued"): (0.0, 0.5), (1, "prefill"): (0.5, 1.0), (1, "held"): (1.0, 3.5),  # one token: no decode
        (2, "queued"): (0.0, 3.6), (2, "prefill"): (3.6, 4.0), (2, "decode"): (4.0, 4.5), (2, "held"): (4.5, 5.0),
        (3, "queued"): (0.0, 3.6), (3, "prefill"): (3.6, 4.0), (3, "decode"): (4.0, 5.0)}
    assert list(spans) == list(expected)  # in request order, each request's states in the order lived
    assert [t for v in spans.values() for t in v] == pytest.approx([t for v in expected.values() for t in v])
    stats = run.latency()
    assert stats.ttft.tolist() == [1.0, 1.0, 4.0, 4.0] and stats.e2e.tolist() == [3.5, 1.0, 4.5, 5.0]
    assert sorted(stats.itl.tolist()) == [0.5, 0.5, 0.5, 0.5, 1.0, 1.0]
    assert stats.tokens_per_s == pytest.approx(10 / 5.0)
    with pytest.raises(ValueError, match="served no requests"):
        StaticRun([], 0.0, [], []).latency()


def test_static_run_spans_tile_each_request_and_hold_short_ones_until_the_batch_ends():
    from companion.serving import hf_static_batching

    model = model_of()
    requests = requests_of(7, seed=6)
    run = hf_static_batching(to_hf_gpt2(model), requests, batch_size=3)
    assert run.outputs == Engine(model, EngineConfig(num_blocks=64, block_size=4)).run(requests)
    spans = run.spans()
    for start, end, members in run.batches:
        longest = max(requests[i].max_new_tokens for i in members)
        for i in members:
            own = [s for s in spans if s.request == i]
            assert [s.kind for s in own][-1] == ("held" if requests[i].max_new_tokens < longest else "decode")
            assert all(a.end == b.start for a, b in zip(own, own[1:]))  # no gaps, no overlaps
            assert own[-1].end == max(run.token_times[j][-1] for j in members) - run.arrival_time
            assert own[0].start == 0.0 and start < end
    stats = run.latency()
    assert len(stats.itl) == sum(r.max_new_tokens - 1 for r in requests)
    assert (stats.e2e >= stats.ttft).all() and (stats.ttft > 0).all()
