"""companion.kvcache: cached generation equals recomputation; the calculator equals hand arithmetic."""

from __future__ import annotations

import pytest
import torch

from companion import decoding, kvcache
from companion.model import GPTConfig, MiniGPT

CONFIGS = {
    "gpt2": {},
    "llama-style": {"positions": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "bias": False},
    "mqa": {"n_kv_head": 1},
}


def model_of(options: dict, seed: int = 0) -> MiniGPT:
    torch.manual_seed(seed)
    return MiniGPT(GPTConfig(vocab_size=97, block_size=48, n_layer=2, n_head=4, n_embd=32, **options)).eval()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("cache_cls", [kvcache.KVCache, kvcache.ConcatKVCache])
def test_greedy_with_the_cache_is_token_identical_to_recomputing(name, cache_cls):
    model = model_of(CONFIGS[name])
    prompt = torch.randint(0, 97, (3, 7), generator=torch.Generator().manual_seed(1))
    greedy = decoding.SamplingConfig(greedy=True)
    with torch.no_grad():
        plain = decoding.generate(model, prompt, 30, greedy)
    cached = kvcache.generate(model, prompt, 30, greedy, cache_cls=cache_cls)
    assert torch.equal(cached, plain)


def test_cached_logits_match_the_full_forward_at_every_position():
    model = model_of(CONFIGS["llama-style"])
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(2))
    cache = kvcache.KVCache.for_model(model, batch=2)
    with torch.no_grad():
        full = model(ids)
        pieces = [model(ids[:, :8], cache=cache)] + [model(ids[:, i:i + 1], cache=cache) for i in range(8, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 20


def test_chunked_prefill_through_the_cache_equals_one_pass():
    model = model_of({})
    ids = torch.randint(0, 97, (1, 24), generator=torch.Generator().manual_seed(3))
    cache = kvcache.KVCache.for_model(model, batch=1)
    with torch.no_grad():
        chunks = [model(ids[:, i:i + 8], cache=cache) for i in range(0, 24, 8)]  # queries see earlier chunks
        torch.testing.assert_close(torch.cat(chunks, dim=1), model(ids), atol=1e-5, rtol=1e-5)


def test_sampling_with_the_cache_draws_what_recomputing_draws():
    model = model_of({})
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(4))
    style = decoding.SamplingConfig(temperature=0.9, top_k=20)
    with torch.no_grad():
        plain = decoding.generate(model, prompt, 20, style, generator=torch.Generator().manual_seed(7))
    cached = kvcache.generate(model, prompt, 20, style, generator=torch.Generator().manual_seed(7))
    assert torch.equal(cached, plain)


def test_the_cache_stores_kv_heads_not_query_heads():
    gqa = kvcache.KVCache.for_model(model_of({"n_kv_head": 2}), batch=1)
    mha = kvcache.KVCache.for_model(model_of({}), batch=1)
    assert gqa.k.shape == (2, 1, 2, 48, 8) and mha.nbytes() == 2 * gqa.nbytes()


def test_concat_cache_copies_grow_quadratically():
    model = model_of({})
    copied = []
    for n in (10, 20):
        cache = kvcache.ConcatKVCache.for_model(model)
        with torch.no_grad():
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
            for _ in range(n):
                model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
        copied.append(cache.bytes_copied)
    assert 3.5 < copied[1] / copied[0] < 4.5, "twice the steps, about four times the bytes moved"


def test_calculator_matches_hand_arithmetic():
    # Llama-3-8B: 32 layers, 8 KV heads of 128, fp16, 8,192 tokens: 2·32·8·128·2·8192 bytes = 1 GiB.
    assert kvcache.kv_bytes("Llama-3-8B", 8192) == 2 * 32 * 8 * 128 * 2 * 8192 == 2**30
    # The "~4 GB" figure counts all 32 query heads as KV heads (Llama-2-7B-style MHA).
    assert kvcache.kv_bytes("Llama-2-7B", 8192) == 4 * 2**30
    # GPT-2 124M: 2·12·12·64·2 = 36,864 bytes per token in fp16.
    assert kvcache.kv_bytes("GPT-2 124M", 1) == 36_864
    # Llama-2-70B uses GQA with 8 KV heads for 64 query heads: 8× smaller than MHA would be.
    mha_70b = kvcache.ModelShape(80, 64, 128, 64)
    assert kvcache.kv_bytes(mha_70b, 4096) == 8 * kvcache.kv_bytes("Llama-2-70B", 4096)
    assert kvcache.kv_bytes("Mistral-7B", 1000, batch=4, dtype="int8") == 2 * 32 * 8 * 128 * 1000 * 4


def test_bad_inputs_are_named():
    model = model_of({})
    with pytest.raises(ValueError, match="max_len=4"):
        cache = kvcache.KVCache.for_model(model, batch=1, max_len=4)
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="exceeds the model's block_size=48"):
        kvcache.generate(model, torch.zeros(1, 40, dtype=torch.long), 10)
    with pytest.raises(ValueError, match=r"k and v must both be \(B=2"):
        cache = kvcache.KVCache.for_model(model, batch=2)
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="dtype must be one of"):
        kvcache.kv_bytes("Llama-3-8B", 10, dtype="fp8")
    with pytest.raises(ValueError, match="model must be a ModelShape"):
        kvcache.kv_bytes("GPT-5", 10)
    with pytest.raises(ValueError, match="n_layer must be an int"):
        kvcache.KVCache(0, 1, 1, 8, 8)


def test_cache_dtype_and_calculator_types_are_checked():
    model = model_of({})
    cache = kvcache.KVCache.for_model(model, batch=1, dtype=torch.float16)
    with pytest.raises(ValueError, match="cache holds torch.float16"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="tokens >= 0 and batch >= 1"):
        kvcache.kv_bytes("Llama-3-8B", 10.5)
