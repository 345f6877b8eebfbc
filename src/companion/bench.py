"""Benchmarks: our cores against the library production uses, in the same run, as ratios.

``python -m companion.bench`` (``make bench``) writes ``bench/results.json`` and a readable
``bench/results.md``. Every record names what was measured (dotted, e.g.
``losses.bce_with_logits.speed_ratio_vs_torch``), our number, the reference number and library,
the unit, the ratio (oriented so that higher is better for ours), the goal, the parameters and
the machine. Absolute times on shared machines are noisy; ratios measured back to back are not.
Tests assert correctness; this module only measures.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import losses, numerics, optim


@dataclass
class Record:
    name: str
    ours: float
    reference: float
    reference_name: str
    unit: str
    ratio: float  # oriented so that higher is better for ours
    goal: str  # the target, in words
    goal_ratio: float  # the target as a number: the goal is met when ratio >= goal_ratio
    params: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal_ratio


def machine() -> dict:
    """CPU model, cores and library versions: what a ratio was measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    return {"cpu": cpu, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def paired_seconds(a: Callable[[], object], b: Callable[[], object], repeat: int = 7, warmup: int = 2) -> tuple[float, float]:
    """Median wall times of ``a()`` and ``b()``, timed alternately so that both see the same machine load."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    for _ in range(warmup):
        a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, bucket in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def speed_record(name: str, ours: Callable, reference: Callable, reference_name: str, goal_ratio: float, goal: str,
                 params: dict, repeat: int, warmup: int = 2) -> Record:
    """Throughput of ours and of the reference, as calls per second, and their ratio."""
    t_ours, t_ref = paired_seconds(ours, reference, repeat, warmup)
    return Record(name, 1 / t_ours, 1 / t_ref, reference_name, "calls/s", t_ref / t_ours, goal, goal_ratio, params)


def _fwd_bwd(loss_fn, *inputs):
    leaf = inputs[0].detach().requires_grad_()

    def run():
        loss_fn(leaf, *inputs[1:]).backward()
        leaf.grad = None

    return run


def fundamentals(smoke: bool) -> list[Record]:
    """Part I: losses, the AdamW step and the stable softmax against PyTorch."""
    g = torch.Generator().manual_seed(0)
    n = 100_000 if smoke else 2_000_000
    logits, targets = torch.randn(n, generator=g), torch.randint(0, 2, (n,), generator=g).float()
    b, k = (512, 1000) if smoke else (4096, 1000)
    class_logits, classes = torch.randn(b, k, generator=g), torch.randint(0, k, (b,), generator=g)
    p = torch.randn(1_000_000 if smoke else 10_000_000, generator=g)
    grad = torch.randn_like(p)
    repeat = 3 if smoke else 9
    goal_ratio, goal = 0.5, "≥ 0.5"  # within 2× of the library

    ours_state, ref_param = {}, torch.nn.Parameter(p.clone())
    ref_opt = torch.optim.AdamW([ref_param], lr=1e-3, weight_decay=0.01)
    ref_param.grad = grad.clone()
    ours_p = p.clone()

    jobs = [
        ("losses.bce_with_logits.speed_ratio_vs_torch", _fwd_bwd(losses.bce_with_logits, logits, targets),
         _fwd_bwd(F.binary_cross_entropy_with_logits, logits, targets), "torch.nn.functional.binary_cross_entropy_with_logits",
         {"n": n, "pass": "forward+backward"}),
        ("losses.cross_entropy.speed_ratio_vs_torch", _fwd_bwd(losses.cross_entropy, class_logits, classes),
         _fwd_bwd(F.cross_entropy, class_logits, classes), "torch.nn.functional.cross_entropy",
         {"batch": b, "classes": k, "pass": "forward+backward"}),
        ("numerics.softmax_stable.speed_ratio_vs_torch", lambda: numerics.softmax_stable(class_logits),
         lambda: torch.softmax(class_logits, -1), "torch.softmax", {"shape": [b, k]}),
        ("optim.adamw_step.speed_ratio_vs_torch",
         lambda: optim.adamw_step(ours_p, grad, ours_state, lr=1e-3, weight_decay=0.01), ref_opt.step,
         "torch.optim.AdamW (foreach)", {"params": p.numel()}),
    ]
    return [speed_record(name, ours, ref, ref_name, goal_ratio, goal, params, repeat)
            for name, ours, ref, ref_name, params in tqdm(jobs, desc="bench: fundamentals")]


def tokenizer_records(smoke: bool) -> list[Record]:
    """BPE training (incremental vs full recount) and cl100k encoding (ours vs tiktoken, one thread)."""
    from . import tokenizer
    from .data import python_docs

    text = python_docs(max_chars=20_000 if smoke else 60_000)
    vocab = 256 + (100 if smoke else 300)
    progress = tqdm(total=2, desc="bench: tokenizer")
    training = speed_record("tokenizer.train_bpe.speed_ratio_vs_naive_recount",
                            lambda: tokenizer.train_bpe(text, vocab), lambda: tokenizer.train_naive(text, vocab),
                            "companion.tokenizer.train_naive (full recount)", 20.0, "≥ 20",
                            {"chars": len(text), "vocab_size": vocab}, repeat=1 if smoke else 3, warmup=0)

    progress.update()
    ours, theirs = tokenizer.cl100k(), tokenizer.cl100k_encoding()
    corpus = python_docs(max_chars=200_000 if smoke else 2_000_000)

    def encode_cold():
        ours._cache.clear()  # no help from chunks seen in an earlier run
        return ours.encode_ordinary(corpus)

    encoding = speed_record("tokenizer.encode.speed_ratio_vs_tiktoken", encode_cold,
                            lambda: theirs.encode_ordinary(corpus), "tiktoken cl100k_base (one thread)",
                            0.1, "≥ 0.1", {"chars": len(corpus)}, repeat=3)
    progress.update()
    progress.close()
    return [training, encoding]


def model_records(smoke: bool) -> list[Record]:
    """MiniGPT against transformers' GPT2LMHeadModel, same config and weights: forward pass and training step."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from . import model as gpt

    size = dict(n_layer=2, n_head=4, n_embd=128) if smoke else dict(n_layer=4, n_head=8, n_embd=256)
    batch, length = (4, 64) if smoke else (8, 256)
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=1024, n_positions=length, **size, resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))
    mini = gpt.MiniGPT(gpt.GPTConfig(vocab_size=1024, block_size=length, **size))
    gpt.load_hf_gpt2(mini, hf.state_dict())
    ids = torch.randint(0, 1024, (batch, length))
    params = {**size, "batch": batch, "seq_len": length}

    def forward(m, logits_of):
        def run():
            m.eval()
            with torch.no_grad():
                logits_of(m(ids))
        return run

    def train_step(m, logits_of):
        def run():
            m.train()
            F.cross_entropy(logits_of(m(ids)).flatten(0, 1), ids.flatten()).backward()
            m.zero_grad(set_to_none=True)
        return run

    mini_logits, hf_logits = (lambda out: out), (lambda out: out.logits)
    repeat = 3 if smoke else 7
    jobs = [("model.forward.speed_ratio_vs_gpt2lmheadmodel", forward(mini, mini_logits), forward(hf, hf_logits)),
            ("model.train_step.speed_ratio_vs_gpt2lmheadmodel", train_step(mini, mini_logits),
             train_step(hf, hf_logits))]
    return [speed_record(name, ours, ref, "transformers GPT2LMHeadModel", 1.0, "≥ 1.0", params, repeat)
            for name, ours, ref in tqdm(jobs, desc="bench: MiniGPT vs GPT-2")]


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")


def lora_records(smoke: bool) -> list[Record]:
    """One LoRA fine-tuning step — forward, backward, AdamW step — of ``companion.lora`` against peft on two
    copies of the book's trained MiniGPT (``lm.pretrained``), same batch, rank, α and targets, one thread;
    and the bytes of AdamW's state after one step (sum of its state tensors' ``nbytes``) against
    ``lora.adamw_state_bytes`` — for LoRA and for full fine-tuning. The byte ratio is min(p/m, m/p):
    1.0 exactly when prediction and measurement agree, below 1 otherwise."""
    import peft
    from peft import LoraConfig, get_peft_model

    from . import lm, lora

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    records = []
    progress = tqdm(total=3, desc="bench: lora")
    try:
        pre = lm.pretrained(smoke, progress=False)
        base = pre.model
        r, alpha = 8, 16.0
        batch, block = (8, 64) if smoke else (8, base.cfg.block_size)
        x, y = pre.data.batch(batch, block, torch.Generator().manual_seed(0))
        ours = copy.deepcopy(base).train()
        lora.add_lora(ours, r, alpha, LORA_TARGETS)
        config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(LORA_TARGETS))
        theirs = get_peft_model(copy.deepcopy(base), config).train()
        opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-4)
        opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=1e-4)

        def step(model, opt):
            def run():
                lm.lm_loss(model, x, y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return run

        repeat = 5 if smoke else 11
        t_ours, t_ref = paired_seconds(step(ours, opt_ours), step(theirs, opt_theirs), repeat=repeat, warmup=2)
        params = {"model": f"MiniGPT {base.n_params():,} params ({'smoke' if smoke else 'full'} recipe)",
                  "r": r, "alpha": alpha, "targets": list(LORA_TARGETS), "batch": [batch, block], "dtype": "fp32",
                  "trainable": lora.trainable_parameters(ours), "optimizer": "torch.optim.AdamW", "threads": 1}
        records.append(Record("lora.train_step.speed_ratio_vs_peft", 1 / t_ours, 1 / t_ref,
                              f"peft {peft.__version__} LoRA (get_peft_model)", "steps/s", t_ref / t_ours,
                              "≥ 0.9 (within 10% of peft)", 0.9, params))
        progress.update()

        ref = "lora.adamw_state_bytes (2·4 bytes/param + 4 per tensor)"
        for name, model, opt in (("lora", ours, opt_ours), ("full", None, None)):
            if model is None:  # full fine-tuning: every parameter of a fresh copy
                model = copy.deepcopy(base).train()
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                step(model, opt)()
            trainable = [p for p in model.parameters() if p.requires_grad]
            measured = lora.optimizer_state_bytes(opt)
            predicted = lora.adamw_state_bytes(trainable)
            records.append(Record(f"lora.{name}_finetune.optimizer_bytes_ratio_vs_calculator", predicted, measured,
                                  "bytes of torch.optim.AdamW's state tensors after one step", "bytes",
                                  min(predicted / measured, measured / predicted),
                                  "= 1.0 (prediction equals measurement)", 1.0,
                                  {**params, "method": name, "trainable": sum(p.numel() for p in trainable),
                                   "tensors": len(trainable), "prediction": ref}))
            progress.update()
    finally:
        progress.close()
        torch.set_num_threads(threads)
    return records


def llm_internals(smoke: bool) -> list[Record]:
    """Part V cores: BPE training and encoding against tiktoken, MiniGPT against GPT2LMHeadModel, LoRA against peft."""
    parts = (tokenizer_records, model_records, lora_records)
    return [r for part in tqdm(parts, desc="bench: llm_internals") for r in part(smoke)]


def decode_step_pair(model, context: int, batch: int = 1) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """Two ways to produce the next token after ``context`` random tokens, (cached, uncached).

    ``cached()`` runs one decode step of (batch, 1) against a ``KVCache`` already holding the
    context, then rewinds the cache so that every call does the same work; ``uncached()`` reruns
    the model over all context + 1 tokens, as generation without a cache does. Both return (batch,) ids.
    """
    from .kvcache import KVCache

    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context < model.cfg.block_size:
        raise ValueError(f"context must be an int in [1, block_size={model.cfg.block_size}), got {context!r}")
    ids = torch.randint(0, model.cfg.vocab_size, (batch, context + 1), generator=torch.Generator().manual_seed(0))
    cache = KVCache.for_model(model, batch=batch, max_len=context + 1)
    with torch.no_grad():
        model(ids[:, :context], cache=cache)  # prefill

    @torch.no_grad()
    def cached() -> torch.Tensor:
        logits = model(ids[:, context:], cache=cache)  # (B, 1, V)
        cache.length = context  # rewind: the next call rewrites the same slot
        return logits[:, -1].argmax(-1)

    @torch.no_grad()
    def uncached() -> torch.Tensor:
        return model(ids)[:, -1].argmax(-1)  # (B, context + 1, V): every position recomputed

    return cached, uncached


def hf_generate_record(model, prompt: torch.Tensor, new_tokens: int, repeat: int, params: dict | None = None) -> Record:
    """Greedy ``kvcache.generate`` against ``GPT2LMHeadModel.generate(use_cache=True)`` on the same weights, tokens/s."""
    from . import kvcache
    from .decoding import SamplingConfig
    from .model import to_hf_gpt2

    hf, greedy = to_hf_gpt2(model), SamplingConfig(greedy=True)
    mask = torch.ones_like(prompt)  # without it HF reads any prompt token equal to pad_token_id as padding

    def ours():
        return kvcache.generate(model, prompt, new_tokens, greedy)

    @torch.no_grad()
    def theirs():
        return hf.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                           pad_token_id=0)

    t_ours, t_ref = paired_seconds(ours, theirs, repeat, warmup=1)
    return Record("kvcache.generate.tokens_per_s_ratio_vs_hf_generate", new_tokens / t_ours, new_tokens / t_ref,
                  "transformers GPT2LMHeadModel.generate(use_cache=True)", "tokens/s", t_ref / t_ours, "≥ 1.0", 1.0,
                  {"prompt_tokens": prompt.shape[1], "new_tokens": new_tokens, "batch": prompt.shape[0],
                   "decoding": "greedy", **(params or {})})


def kvcache_records(smoke: bool) -> list[Record]:
    """The KV cache: one decode step at 1,024 tokens of context against recomputing, and generate against HF's.

    A MiniGPT of the book's shape (4 layers, d = 192, 4 heads, vocabulary 1,024), randomly
    initialized: the time of a forward pass does not depend on the values of the weights. One thread.
    """
    from .model import GPTConfig, MiniGPT

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model is small: one core is faster than two and far less noisy
    try:
        torch.manual_seed(0)
        shape = dict(vocab_size=1024, n_layer=4, n_head=4, n_embd=192)
        model = MiniGPT(GPTConfig(block_size=1088, **shape)).eval()
        params = {**shape, "weights": "random init (timing does not depend on their values)", "threads": 1}
        progress = tqdm(total=2, desc="bench: kvcache")
        cached, uncached = decode_step_pair(model, 1024)
        t_cached, t_uncached = paired_seconds(cached, uncached, repeat=3 if smoke else 9, warmup=1)
        decode = Record("kvcache.decode_1024.speedup_vs_no_cache", 1 / t_cached, 1 / t_uncached,
                        "companion MiniGPT without a cache (full forward over the context)", "tokens/s",
                        t_uncached / t_cached, "≥ 10×", 10.0, {**params, "context": 1024, "batch": 1})
        progress.update()
        prompt = torch.randint(0, 1024, (1, 32), generator=torch.Generator().manual_seed(1))
        versus_hf = hf_generate_record(model, prompt, 16 if smoke else 96, repeat=3 if smoke else 5, params=params)
        progress.update()
        progress.close()
    finally:
        torch.set_num_threads(threads)
    return [decode, versus_hf]


def paged_records(smoke: bool) -> list[Record]:
    """KV reservation on a ShareGPT-scale log-normal trace: waste per policy and the sequences a budget sustains.

    Pure accounting, no timing: every decode step of 1,000 sequences (prompt and output medians of
    256 tokens, sigma 0.8, at most 2,048 in all), as in Kwon et al. (2023).
    """
    from .data import request_trace
    from .paged import concurrent_sequences, reservation_waste

    trace = request_trace(200 if smoke else 1000, seed=0, prompt_median=256, output_median=256, sigma=0.8,
                          max_len=2048)
    p, o, params = trace.prompt_len, trace.output_len, {"requests": len(trace), "prompt_median": 256,
                                                        "output_median": 256, "sigma": 0.8, "max_len": 2048}
    paged, contiguous = reservation_waste(p, o, "paged", 2048, 16), reservation_waste(p, o, "max_len", 2048)
    budget = 32 * 2048  # KV for 32 sequences at full length
    many, few = concurrent_sequences(p, o, budget, "paged", 2048, 16), concurrent_sequences(p, o, budget, "max_len", 2048)
    return [
        Record("paged.waste_paged16.ratio_vs_4pct_bound", paged, 0.04, "the 4% bound (Kwon et al., 2023)",
               "fraction of reserved KV unused", 0.04 / paged, "paged(16) waste ≤ 4%", 1.0, {**params, "block": 16}),
        Record("paged.waste_max_len.ratio_vs_60pct_floor", contiguous, 0.60, "the 60% floor (Kwon et al., 2023)",
               "fraction of reserved KV unused", contiguous / 0.60, "contiguous max-length waste ≥ 60%", 1.0, params),
        Record("paged.admitted.ratio_vs_max_len", many, few, "contiguous max-length reservation",
               "sequences sustained", many / few, "≥ 3×", 3.0, {**params, "budget_tokens": budget, "block": 16}),
    ]


def engine_records(smoke: bool) -> list[Record]:
    """The continuous-batching engine against HF ``generate`` with static batching, same weights, trace and KV memory.

    Static batching of B requests reserves B × block_size tokens of KV; the engine gets the same
    number of KV tokens as blocks and admits as many sequences as they hold. Greedy outputs must be
    identical (checked here: a benchmark of wrong answers would be meaningless). One thread.
    """
    import numpy as np

    from .data import request_trace
    from .model import GPTConfig, MiniGPT, to_hf_gpt2
    from .serving import Engine, EngineConfig, Request, hf_static_batching

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        shape = dict(vocab_size=1024, block_size=128, n_layer=4, n_head=4, n_embd=192)
        if smoke:
            shape.update(n_layer=2, n_embd=64)
        model = MiniGPT(GPTConfig(**shape)).eval()
        hf = to_hf_gpt2(model)
        rng = np.random.default_rng(0)
        n, batch, block = (32, 8, 16) if smoke else (128, 16, 16)
        trace = request_trace(n, seed=0, prompt_median=20, output_median=24, sigma=1.0, max_len=shape["block_size"],
                              prompt_sigma=0.6, max_prompt_len=48, max_output_len=80)  # any static batch fits
        outputs = trace.output_len
        requests = [Request(rng.integers(0, 1024, p).tolist(), int(o)) for p, o in zip(trace.prompt_len, outputs)]
        config = EngineConfig(num_blocks=batch * shape["block_size"] // block, block_size=block,
                              max_num_seqs=n, max_batched_tokens=512)
        tokens = int(outputs.sum())
        engine_s, static_s = [], []
        for _ in tqdm(range(2 if smoke else 3), desc="bench: engine vs HF static batching"):
            start = time.perf_counter()
            static = hf_static_batching(hf, requests, batch)
            static_s.append(time.perf_counter() - start)
            engine = Engine(model, config)
            start = time.perf_counter()
            ours = engine.run(requests)
            engine_s.append(time.perf_counter() - start)
            if ours != static.outputs:
                raise RuntimeError("engine and static-batching outputs differ: the comparison is void")
        t_ours, t_ref = statistics.median(engine_s), statistics.median(static_s)
    finally:
        torch.set_num_threads(threads)
    params = {**shape, "weights": "random init", "requests": n, "static_batch": batch, "kv_tokens": batch * shape["block_size"],
              "engine_blocks": config.num_blocks, "block": block, "output_sigma": 1.0, "threads": 1,
              "preemptions": sum(s.preempted for s in engine.steps), "identical_outputs": True}
    return [Record("serving.engine.tokens_per_s_ratio_vs_hf_static_batching", tokens / t_ours, tokens / t_ref,
                   "transformers GPT2LMHeadModel.generate, static batches", "tokens/s", t_ref / t_ours, "≥ 3×", 3.0,
                   params)]


def specdec_records(smoke: bool) -> list[Record]:
    """Speculative decoding: the book's MiniGPT verifies its distilled one-block draft, one thread, KV caches.

    (a) Tokens per target step against E(α, γ) = (1 − α^(γ+1)) / (1 − α) at the α measured in the same
    runs (the mean overlap Σ min(p, q) at the positions the acceptance test reached), sampling at T = 1.
    (b) Greedy wall-clock against target-only greedy decoding with the target's KV cache, with the
    tokens checked identical; γ is the best γ for the measured α and draft/target cost ratio c.
    """
    from . import lm, specdec
    from .decoding import SamplingConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: one core is faster and far less noisy than two
    try:
        with torch.no_grad():
            pre = lm.pretrained(smoke, progress=False)
            draft = lm.pretrained_draft(smoke, progress=False, target=pre).model
            target = pre.model
            prompt_len, new = 16, (40 if smoke else 100)
            starts = range(0, len(pre.data.val) - prompt_len, (len(pre.data.val) - prompt_len) // (4 if smoke else 12))
            prompts = [pre.data.val[s:s + prompt_len][None] for s in starts][: 4 if smoke else 12]
            progress = tqdm(total=2, desc="bench: specdec")

            (t1, t5), (d1, _) = specdec.pass_seconds([target, draft], prompt_len + new // 2, [1, 5])
            c, v = d1 / t1, t5 / t1  # draft/target cost per pass; target over 5 tokens / over 1
            sampled, gamma_a = [], 4
            for i, prompt in enumerate(prompts):
                sampled.append(specdec.speculative_generate(target, draft, prompt, new, gamma_a, SamplingConfig(),
                                                            torch.Generator().manual_seed(i))[1])
            overlap = [o for s in sampled for o in s.overlap]
            alpha = sum(overlap) / len(overlap)
            full = [a + 1 for s in sampled for a, d in zip(s.accepted, s.drafted) if d == gamma_a]
            measured, predicted = sum(full) / len(full), specdec.expected_tokens(alpha, gamma_a)
            formula = Record("specdec.tokens_per_step.agreement_with_formula", measured, predicted,
                             "E(α, γ) = (1 − α^(γ+1)) / (1 − α) at the measured α", "tokens / target step",
                             1 - abs(measured / predicted - 1), "within ±5% (ratio ≥ 0.95)", 0.95,
                             {"gamma": gamma_a, "alpha": round(alpha, 4), "target_steps": len(full),
                              "decoding": "sampling, T = 1", "prompts": len(prompts), "new_tokens": new})
            progress.update()

            greedy = SamplingConfig(greedy=True)
            gamma = specdec.optimal_gamma(alpha, c, max_gamma=8)
            spec_out = [specdec.speculative_generate(target, draft, p, new, gamma, greedy) for p in prompts]
            base_out = [specdec.target_only_generate(target, p, new, greedy) for p in prompts]
            identical = all(torch.equal(a, b) for (a, _), b in zip(spec_out, base_out))
            timed = []  # (wall seconds, stats) of every timed speculative call

            def spec_run():
                start = time.perf_counter()
                stats = [specdec.speculative_generate(target, draft, p, new, gamma, greedy)[1] for p in prompts]
                timed.append((time.perf_counter() - start, stats))

            t_spec, t_base = paired_seconds(
                spec_run, lambda: [specdec.target_only_generate(target, p, new, greedy) for p in prompts],
                repeat=3 if smoke else 7, warmup=1)
            tokens = new * len(prompts)
            median_call = sorted(timed, key=lambda ts: ts[0])[len(timed) // 2]
            run = specdec.run_costs(median_call[1], median_call[0], t_base / tokens)
            greedy_alpha = sum(o for _, s in spec_out for o in s.overlap) / sum(len(s.overlap) for _, s in spec_out)
            speed = Record("specdec.greedy.speedup_vs_target_only", tokens / t_spec, tokens / t_base,
                           "target-only greedy decoding with its KV cache (kvcache.generate)", "tokens/s",
                           t_base / t_spec, "≥ 1.5×", 1.5,
                           {"gamma": gamma, "alpha": round(greedy_alpha, 4), "c": round(c, 4),
                            "verify_cost_5_tokens": round(v, 3),
                            "c_in_run": round(run["c"], 3), "verify_cost_in_run": round(run["v"], 3),
                            "other_per_step": round(run["other"], 3),
                            "tokens_per_step": round(sum(s.tokens_per_step for _, s in spec_out) / len(spec_out), 3),
                            "predicted_speedup": round(specdec.expected_speedup(greedy_alpha, gamma, c, v), 3),
                            "predicted_speedup_in_run_costs": round(
                                specdec.expected_speedup(greedy_alpha, gamma, run["c"], run["v"]), 3),
                            "identical_tokens": identical, "threads": 1, "prompts": len(prompts), "new_tokens": new,
                            "target_params": target.n_params(), "draft_params": draft.n_params()})
            progress.update()
            progress.close()
    finally:
        torch.set_num_threads(threads)
    return [formula, speed]


def quant_records(smoke: bool) -> list[Record]:
    """Weight-only quantization of the trained MiniGPT (``lm.pretrained``): validation perplexity of int8
    per channel, int4 group-128 and NF4 against fp32 on the same held-out tokens, and the bytes int4
    stores. One thread."""
    from . import lm, quant

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    records = []
    progress = tqdm(total=4, desc="bench: quant")
    try:
        with torch.no_grad():
            pre = lm.pretrained(smoke, progress=False)
            model, block = pre.model, pre.model.cfg.block_size
            tokens = 4096 if smoke else 32768

            def ppl(m: nn.Module) -> float:
                return math.exp(lm.evaluate(m, pre.data, block, tokens))

            base = ppl(model)
            params = {"model": f"MiniGPT {model.n_params():,} params ({'smoke' if smoke else 'full'} recipe)",
                      "eval_tokens": tokens, "weights": "trained (lm.pretrained)", "quantized": "block linears; "
                      "embedding and tied head in fp32", "rounding": "round-to-nearest", "threads": 1}
            for name, scheme, tol in (("int8_channel", "int8", 0.005), ("int4_g128", "int4-g128", 0.05),
                                      ("nf4", "nf4", 0.05)):
                q = ppl(quant.quantize_model(model, scheme))
                records.append(Record(f"quant.{name}.ppl_ratio_vs_fp32", q, base, "the same MiniGPT in fp32",
                                      "perplexity", (1 + tol) / (q / base), f"perplexity within {tol:.1%} of fp32",
                                      1.0, {**params, "scheme": quant.as_scheme(scheme).name,
                                            "tolerance": tol, "ppl_increase": q / base - 1}))
                progress.update()
            q4 = quant.quantize_model(model, "int4-g128")
            lin_fp = sum(m.weight.numel() * 4 for n, m in model.named_modules()
                         if isinstance(m, nn.Linear) and n != "lm_head")
            lin_q = sum(m.qweight.nbytes() for m in q4.modules() if isinstance(m, quant.QuantLinear))
            records.append(Record("quant.int4_g128.weight_bytes_ratio_vs_fp32", lin_q, lin_fp,
                                  "fp32 weights of the same layers", "bytes", lin_fp / lin_q,
                                  "≥ 6× fewer bytes than fp32 (4-bit codes packed + fp32 group scales)", 6.0,
                                  {**params, "bits_per_weight": 8 * lin_q / (lin_fp / 4)}))
            progress.update()
    finally:
        torch.set_num_threads(threads)
        progress.close()
    return records


def llm_serving(smoke: bool) -> list[Record]:
    """Part VI cores: the KV cache against recomputation and HF generate, paged reservation, the engine against
    static batching, speculative decoding against the formula and target-only decoding, quantized perplexity."""
    parts = (kvcache_records, paged_records, engine_records, specdec_records, quant_records)
    return [r for part in tqdm(parts, desc="bench: llm_serving") for r in part(smoke)]


def matmul_records(smoke: bool) -> list[Record]:
    """numba tiled matmul against torch.matmul at 1024³ fp32 (512³ in smoke), both on one thread;
    and against the naive compiled triple loop it replaces (256³ / 512³)."""
    from . import matmul as mm

    n, n_naive, n_threads = (512, 256, 1) if smoke else (1024, 512, 1)
    rng = np.random.default_rng(0)
    records = []
    progress = tqdm(total=2, desc="bench: matmul")
    with mm.threads(n_threads):
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        t_tiled, t_torch = paired_seconds(lambda: mm.matmul_numba_tiled(a, b), lambda: mm.matmul_torch(a, b),
                                          repeat=5 if smoke else 9, warmup=2)
        gflop = 2 * n**3 / 1e9
        records.append(Record("kernels.matmul_numba_tiled.gflops_ratio_vs_torch", gflop / t_tiled, gflop / t_torch,
                              "torch.matmul (fp32)", "GFLOP/s", t_torch / t_tiled, "≥ 0.3", 0.3,
                              {"n": n, "dtype": "float32", "threads": n_threads, "tile (bm, bn, bk)": list(mm.TILE)}))
        progress.update()
        a, b = (rng.standard_normal((n_naive, n_naive), dtype=np.float32) for _ in range(2))
        t_tiled, t_naive = paired_seconds(lambda: mm.matmul_numba_tiled(a, b), lambda: mm.matmul_numba_naive(a, b),
                                          repeat=3, warmup=1)
        gflop = 2 * n_naive**3 / 1e9
        records.append(Record("kernels.matmul_numba_tiled.speedup_vs_numba_naive", gflop / t_tiled, gflop / t_naive,
                              "companion.matmul.matmul_numba_naive (i, j, k loops, compiled)", "GFLOP/s",
                              t_naive / t_tiled, "≥ 5", 5.0, {"n": n_naive, "dtype": "float32", "threads": n_threads}))
        progress.update()
    progress.close()
    return records


def flash_records(smoke: bool) -> list[Record]:
    """Tiled online-softmax attention, forward, fp32, non-causal, B=1, H=8, d=64, L=4096, one thread.

    Smoke mode times at L=2048 (memory is always measured at L=4096: it takes seconds).

    Memory: peak bytes allocated during the call (output included), read from torch.profiler's
    allocation log, against naive attention that materializes the (B, H, L, L) scores. Speed:
    against F.scaled_dot_product_attention's default CPU dispatch (its fused flash kernel) and its
    math backend (the materializing reference), timed alternately.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from .flash import BLOCK_K, BLOCK_Q, flash_forward, naive_attention, peak_memory

    length = 2048 if smoke else 4096
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 8, 4096, 64, generator=g) for _ in range(3))
        params = {"B": 1, "H": 8, "L": 4096, "d": 64, "dtype": "float32", "causal": False, "threads": 1,
                  "block_q": BLOCK_Q, "block_k": BLOCK_K}
        progress = tqdm(total=3, desc="bench: flash attention")
        ours_bytes, naive_bytes = peak_memory(flash_forward, q, k, v), peak_memory(naive_attention, q, k, v)
        records = [Record("kernels.flash_attention.peak_memory_ratio_vs_naive", ours_bytes, naive_bytes,
                          "naive attention (materialized L×L scores)", "peak bytes allocated",
                          naive_bytes / ours_bytes, "≥ 50× less", 50.0, params)]
        progress.update()
        q, k, v = (x[:, :, :length].contiguous() for x in (q, k, v))
        params = {**params, "L": length}

        def ours():
            flash_forward(q, k, v)

        def sdpa():
            F.scaled_dot_product_attention(q, k, v)

        def sdpa_math():
            with sdpa_kernel(SDPBackend.MATH):
                F.scaled_dot_product_attention(q, k, v)

        repeat = 3 if smoke else 5
        for name, ref, ref_name, goal_ratio, goal in (
                ("speed_ratio_vs_sdpa", sdpa, "F.scaled_dot_product_attention (default CPU dispatch)", 0.5, "≥ 0.5"),
                ("speed_ratio_vs_sdpa_math", sdpa_math, "F.scaled_dot_product_attention (SDPBackend.MATH)", 1.5,
                 "≥ 1.5")):
            t_ours, t_ref = paired_seconds(ours, ref, repeat=repeat, warmup=1)
            records.append(Record(f"kernels.flash_attention.{name}", 1 / t_ours, 1 / t_ref, ref_name, "calls/s",
                                  t_ref / t_ours, goal, goal_ratio, params))
            progress.update()
        progress.close()
    finally:
        torch.set_num_threads(threads)
    return records


def kernels(smoke: bool) -> list[Record]:
    """Part VII cores: the tiled numba matmul, FlashAttention in PyTorch."""
    parts = (matmul_records, flash_records)
    return [r for part in tqdm(parts, desc="bench: kernels") for r in part(smoke)]


def ann_records(smoke: bool) -> list[Record]:
    """Part III vector search: our IVF and IVF-PQ against faiss at the same nlist/nprobe (recall and single-query
    QPS, one thread), and LSH's recall@10 with re-ranking, on the clustered Gaussian set."""
    from .ann import IVF, IVFPQ, LSH
    from .ann import eval as ann_eval

    ann_eval.set_threads(1)
    torch.set_num_threads(1)
    n, nq = (5_000, 300) if smoke else (20_000, 1_000)
    data = ann_eval.clustered(n, nq)
    nlist = int(round(n ** 0.5))
    repeat = 3 if smoke else 7
    records = []
    pairs = [("ivf", IVF(nlist), ann_eval.Faiss("IVFFlat", nlist=nlist), "faiss.IndexIVFFlat", 2, 0.01, 0.4),
             ("ivfpq", IVFPQ(nlist, m=16), ann_eval.Faiss("IVFPQ", nlist=nlist, m=16), "faiss.IndexIVFPQ", 8, 0.02, 0.25)]
    for name, ours, theirs, ref_name, nprobe, tol, qps_goal in tqdm(pairs, desc="bench: ann"):
        ours.build(data.x), theirs.build(data.x)
        ours.nprobe = theirs.nprobe = nprobe
        r_ours = ann_eval.recall(data, ours.search(data.q, 10)[1])
        r_ref = ann_eval.recall(data, theirs.search(data.q, 10)[1])
        params = {"n": n, "d": data.d, "queries": nq, "nlist": nlist, "nprobe": nprobe, "k": 10, "threads": 1,
                  **({"m": 16, "bits": 8} if name == "ivfpq" else {})}
        records.append(Record(f"ann.{name}.recall_agreement_vs_{ref_name.split('.')[1].lower()}", r_ours, r_ref,
                              ref_name, "recall@10", 1 - abs(r_ours - r_ref), f"|Δ recall| ≤ {tol}", 1 - tol, params))

        def loop(index):
            return lambda: [index.search(data.q[i:i + 1], 10) for i in range(nq)]

        t_ours, t_ref = paired_seconds(loop(ours), loop(theirs), repeat=repeat, warmup=1)
        records.append(Record(f"ann.{name}.single_query_qps_ratio_vs_{ref_name.split('.')[1].lower()}", nq / t_ours,
                              nq / t_ref, ref_name, "queries/s", t_ref / t_ours, f"≥ {qps_goal}", qps_goal, params))
    lsh = LSH(nbits=12, ntables=16, probes=12).build(data.x)
    r_lsh = ann_eval.recall(data, lsh.search(data.q, 10)[1])
    records.append(Record("ann.lsh.recall_at_10_with_reranking", r_lsh, 0.9, "goal: recall@10 = 0.9", "recall@10",
                          r_lsh / 0.9, "recall@10 ≥ 0.9", 1.0,
                          {"n": n, "d": data.d, "nbits": 12, "ntables": 16, "probes": 12,
                           "candidates_per_query": float(lsh.last_candidates.mean())}))
    return records


def hnsw_records(smoke: bool) -> list[Record]:
    """HNSW from scratch against hnswlib, same M and ef_construction, one thread each: recall@10, single-query
    QPS at matched recall (hnswlib's curve read at our recall, linear in log QPS) and build time, on the
    clustered Gaussian set and on MiniLM embeddings of the docs' sentences. The ef sweeps are in params."""
    import hnswlib

    from .ann import HNSW
    from .ann import eval as ann_eval

    ann_eval.set_threads(1)
    torch.set_num_threads(1)
    k, M, ef_c, target = 10, 16, (100 if smoke else 200), 0.95
    efs = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    datasets = [("clustered", lambda: ann_eval.clustered(*((5_000, 200) if smoke else (20_000, 500)))),
                ("minilm_docs", lambda: ann_eval.minilm_docs(n_max=800 if smoke else None, nq=100 if smoke else 200))]
    records = []
    for name, make in tqdm(datasets, desc="bench: hnsw"):
        data = make()
        built = {}

        def build_ours():
            built["ours"] = HNSW(M=M, ef_construction=ef_c, metric=data.metric).build(data.x)

        def build_ref():
            index = hnswlib.Index(space=data.metric, dim=data.d)
            index.init_index(max_elements=data.n, M=M, ef_construction=ef_c, random_seed=0)
            index.set_num_threads(1)
            index.add_items(data.x, num_threads=1)
            built["ref"] = index

        t_ours, t_ref = paired_seconds(build_ours, build_ref, repeat=1 if smoke else 3, warmup=0)
        ours, ref = built["ours"], built["ref"]
        rows = [data.q[i:i + 1] for i in range(len(data.q))]
        curves = {"ef": efs, "recall_ours": [], "recall_hnswlib": [], "qps_ours": [], "qps_hnswlib": []}
        for ef in efs:
            ours.ef = ef
            ref.set_ef(ef)
            curves["recall_ours"].append(ann_eval.recall(data, np.concatenate([ours.search(r, k)[1] for r in rows])))
            curves["recall_hnswlib"].append(ann_eval.recall(data, np.concatenate([ref.knn_query(r, k)[0] for r in rows])))
            t_o, t_r = paired_seconds(lambda: [ours.search(r, k) for r in rows],
                                      lambda: [ref.knn_query(r, k) for r in rows], repeat=5 if smoke else 7, warmup=1)
            curves["qps_ours"].append(len(rows) / t_o)
            curves["qps_hnswlib"].append(len(rows) / t_r)
        params = {"dataset": data.name, "n": data.n, "d": data.d, "queries": len(rows), "k": k, "M": M,
                  "ef_construction": ef_c, "metric": data.metric, "threads": 1, "curves": curves}
        # the operating point: the smallest ef at which ours reaches the target recall
        hit = next((i for i, r in enumerate(curves["recall_ours"]) if r >= target), len(efs) - 1)
        recall, qps = curves["recall_ours"][hit], curves["qps_ours"][hit]
        qps_ref = _qps_at_recall(curves["recall_hnswlib"], curves["qps_hnswlib"], recall)
        prefix = f"ann.hnsw.{name}"
        records += [
            Record(f"{prefix}.recall_at_10", recall, curves["recall_hnswlib"][hit], "hnswlib (same ef)", "recall@10",
                   recall / target, "recall@10 ≥ 0.95 at some ef", 1.0, {**params, "ef": efs[hit]}),
            Record(f"{prefix}.qps_ratio_vs_hnswlib_at_matched_recall", qps, qps_ref,
                   "hnswlib (one thread, QPS read at our recall)", "queries/s", qps / qps_ref, "≥ 0.25", 0.25,
                   {**params, "ef": efs[hit], "recall": recall}),
            Record(f"{prefix}.build_time_ratio_vs_hnswlib", t_ours, t_ref, "hnswlib add_items (one thread)", "s",
                   20 * t_ref / t_ours, "build ≤ 20× hnswlib's time (ratio = 20·t_hnswlib / t_ours)", 1.0, params),
        ]
    return records


def _qps_at_recall(recalls: list[float], qps: list[float], recall: float) -> float:
    """A QPS-vs-recall curve (by rising ef) read at ``recall``, linear in log QPS between sweep points; the
    first point's QPS below the curve's range (which favours the reference) and the last point's above it."""
    r, log_qps = np.maximum.accumulate(np.asarray(recalls)), np.log(np.asarray(qps))
    if recall <= r[0]:
        return float(qps[0])
    i = int(np.searchsorted(r, recall))  # the first point with r >= recall
    if i >= len(r):
        return float(qps[-1])
    w = (recall - r[i - 1]) / max(r[i] - r[i - 1], 1e-12)
    return float(np.exp(log_qps[i - 1] + w * (log_qps[i] - log_qps[i - 1])))


def retrieval(smoke: bool) -> list[Record]:
    """Part III cores: IVF, IVF-PQ and LSH against faiss, HNSW against hnswlib."""
    threads = torch.get_num_threads()
    try:
        return [r for part in tqdm((ann_records, hnsw_records), desc="bench: retrieval") for r in part(smoke)]
    finally:
        torch.set_num_threads(threads)


SUITES = {"fundamentals": fundamentals, "llm_internals": llm_internals, "llm_serving": llm_serving,
          "kernels": kernels, "retrieval": retrieval}


def run(smoke: bool, suites: list[str] | None = None) -> list[Record]:
    """Run the chosen suites (default: all) and stamp every record with the machine it ran on."""
    unknown = set(suites or []) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suites {sorted(unknown)}; choose from {sorted(SUITES)}")
    info = machine()
    records = [r for suite in (suites or sorted(SUITES)) for r in SUITES[suite](smoke)]
    for r in records:
        r.machine = info
    return records


def to_markdown(records: list[Record]) -> str:
    """The results as a Markdown table, one row per benchmark, with whether its goal is met."""
    lines = ["| benchmark | ratio (ours / reference) | goal | met | ours | reference |", "|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| `{r.name.rsplit('.', 1)[0]}` | {r.ratio:.2f} | {r.goal} | {'yes' if r.met else 'no'} | "
                     f"{r.ours:.4g} {r.unit} | {r.reference:.4g} {r.unit}, `{r.reference_name}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for checking that the suite runs")
    parser.add_argument("--suite", choices=sorted(SUITES), action="append", help="default: all suites")
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args(argv)
    records = run(args.smoke, args.suite)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps([{**asdict(r), "met": r.met} for r in records], indent=2))
    text = f"# Benchmark results\n\nMachine: {records[0].machine if records else machine()}\n\n{to_markdown(records)}"
    (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
