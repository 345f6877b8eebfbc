"""Training a language model: token data, the production loop, checkpoints, and the book's model.

The loop is ``training.train``'s, grown to what a language model needs:

- batches are random windows of a token stream, targets shifted by one;
- AdamW decays only matrices (``training.param_groups``), the LR warms up then follows a cosine;
- gradients are clipped by global norm;
- a batch can be split into ``grad_accum`` micro-batches whose gradients add up to the large
  batch's exactly (each micro-loss is weighted by its share of the batch);
- forward and loss can run under bf16 autocast on the CPU;
- a checkpoint holds everything the next step depends on — weights, optimizer moments, step,
  the batch sampler's and the global RNG state, the history — and is written atomically (a
  temporary file, then ``os.replace``), so resuming gives the very losses the uninterrupted run
  would have;
- ``pretrained`` trains the book's small model once from a seed and caches it, so later
  chapters (attention maps, decoding, serving) load it in a second and regenerate it when missing.

    >>> data = TokenData(torch.randint(0, 50, (2000,)), torch.randint(0, 50, (500,)), vocab_size=50)
    >>> x, y = data.batch(4, 16, torch.Generator().manual_seed(0))   # (4, 16) inputs, (4, 16) targets

References: Radford et al. (2019) and Karpathy's nanoGPT for the recipe; Loshchilov & Hutter (2019)
for AdamW; Hoffmann et al., "Training Compute-Optimal Large Language Models" (2022) for the
tokens-per-parameter rule the chapter compares against.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .training import param_groups, warmup_cosine

FORMAT = 1  # bump when a change to the code would change the cached model


# ---------------------------------------------------------------------------------------------
# Token data
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenData:
    """A training and a validation token stream (1-D long tensors) over ``vocab_size`` ids."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.long:
                raise ValueError(f"{name} must be a 1-D long tensor of token ids, got {getattr(t, 'dtype', type(t))} "
                                 f"{tuple(getattr(t, 'shape', ()))}")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.vocab_size):
                raise ValueError(f"{name} ids must lie in [0, vocab_size={self.vocab_size}), "
                                 f"got [{int(t.min())}, {int(t.max())}]")

    @classmethod
    def from_ids(cls, ids: list[int] | torch.Tensor, vocab_size: int, val_frac: float = 0.1) -> TokenData:
        """The last ``val_frac`` of the stream is validation, the rest training (a contiguous split)."""
        if not 0 < val_frac < 1:
            raise ValueError(f"val_frac must be in (0, 1), got {val_frac}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be an int >= 1, got {vocab_size!r}")
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() != 1 or len(ids) < 2:
            raise ValueError(f"ids must be a 1-D stream of at least 2 tokens, got shape {tuple(ids.shape)}")
        cut = int(len(ids) * (1 - val_frac))
        return cls(ids[:cut], ids[cut:], vocab_size)

    def batch(self, batch_size: int, block: int, generator: torch.Generator, split: str = "train"):
        """``batch_size`` random windows: inputs (B, block) and the next tokens as targets (B, block)."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size < 1 or block < 1:
            raise ValueError(f"batch_size and block must be >= 1, got {batch_size} and {block}")
        stream = self.train if split == "train" else self.val
        if len(stream) < block + 1:
            raise ValueError(f"the {split} stream has {len(stream)} tokens, fewer than block + 1 = {block + 1}")
        starts = torch.randint(0, len(stream) - block, (batch_size,), generator=generator)
        offsets = torch.arange(block + 1)
        windows = stream[starts[:, None] + offsets]  # (B, block + 1)
        return windows[:, :-1], windows[:, 1:]

    def val_windows(self, block: int, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Consecutive non-overlapping validation windows covering up to ``max_tokens`` targets: (N, block) each."""
        n = min((len(self.val) - 1) // block, max(1, max_tokens // block))
        if n < 1:
            raise ValueError(f"the validation stream ({len(self.val)} tokens) is shorter than one block of {block}")
        windows = self.val[: n * block + 1]
        return windows[:-1].view(n, block), windows[1:].view(n, block)


def unigram_loss(data: TokenData) -> float:
    """Validation cross-entropy (nats/token) of the best context-free model: token frequencies, add-one smoothed.

    Any language model worth its parameters must beat this; it is the loss of predicting every
    token from how common it is, ignoring everything before it.
    """
    counts = torch.bincount(data.train, minlength=data.vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return float(-log_p[data.val].mean())


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass
class LMTrainConfig:
    steps: int = 500
    batch_size: int = 32  # sequences per optimizer step
    block: int = 128  # tokens per sequence
    grad_accum: int = 1  # micro-batches per step; batch_size must divide by it
    peak_lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip_norm: float = 1.0
    autocast: str | None = "bf16"  # "bf16" or None (fp32)
    eval_every: int = 50
    eval_tokens: int = 16_384
    checkpoint_every: int = 0  # 0: only at the end (when a checkpoint path is given)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "block", "grad_accum", "eval_every", "eval_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        if not self.peak_lr > 0 or not 0 <= self.min_lr_frac <= 1:
            raise ValueError(f"need peak_lr > 0 and min_lr_frac in [0, 1], got {self.peak_lr}, {self.min_lr_frac}")
        if not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")
        if self.autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be 'bf16' or None, got {self.autocast!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")


@dataclass
class LMHistory:
    step: list[int] = field(default_factory=list)  # every optimizer step
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping
    eval_step: list[int] = field(default_factory=list)  # the steps at which validation ran
    val_loss: list[float] = field(default_factory=list)
    samples: list[tuple[int, str]] = field(default_factory=list)  # (step, generated text) at each evaluation
    tokens_per_step: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def autocast_context(kind: str | None, device: torch.device):
    """bf16 autocast on the model's device, or nothing."""
    if kind == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy; logits (B, T, V) are upcast to fp32 first (the softmax needs the range)."""
    return F.cross_entropy(model(x).float().flatten(0, 1), y.flatten())


@torch.no_grad()
def evaluate(model: nn.Module, data: TokenData, block: int, max_tokens: int, autocast: str | None = None,
             batch_size: int = 32) -> float:
    """Mean validation loss over fixed, consecutive windows: the same tokens every time it is called."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, ys = data.val_windows(block, max_tokens)
    total = 0.0
    for i in range(0, len(xs), batch_size):
        x, y = xs[i:i + batch_size].to(device), ys[i:i + batch_size].to(device)
        with autocast_context(autocast, device):
            total += float(lm_loss(model, x, y)) * len(x)
    model.train(was_training)
    return total / len(xs)


def accumulate_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batches: int,
                         autocast: str | None = None) -> float:
    """Backward over ``micro_batches`` equal slices of the batch; returns the batch's mean loss.

    Each slice's loss is scaled by its share of the batch, so the summed gradients equal those of
    one backward pass over the whole batch, while only one slice's activations live at a time.
    """
    if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) or micro_batches < 1:
        raise ValueError(f"micro_batches must be an int >= 1, got {micro_batches!r}")
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x and y must both be (B, T) token ids, got {tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) % micro_batches:
        raise ValueError(f"a batch of {len(x)} does not split into {micro_batches} equal micro-batches")
    device = next(model.parameters()).device
    total = 0.0
    for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
        with autocast_context(autocast, device):
            loss = lm_loss(model, xs.to(device), ys.to(device))
        (loss / micro_batches).backward()
        total += float(loss.detach()) / micro_batches
    return total


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write ``state`` with torch.save to a temporary file, then rename it over ``path``.

    A rename within one folder is atomic on POSIX: a crash leaves either the old checkpoint or the
    new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def train_lm(
    model: nn.Module,
    data: TokenData,
    cfg: LMTrainConfig,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    sample: Callable[[nn.Module], str] | None = None,
    progress: bool = True,
) -> LMHistory:
    """Train ``model`` on ``data`` for ``cfg.steps`` optimizer steps; returns the history.

    ``checkpoint``: where to save (every ``cfg.checkpoint_every`` steps and at the end).
    ``resume``: continue from that checkpoint, exactly where it stopped.
    ``stop_after``: stop (and checkpoint) after this many steps in total, as if interrupted.
    ``sample``: called at every evaluation; its text goes into ``history.samples``.
    """
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an int >= 1 or None, got {stop_after!r}")
    if resume and (checkpoint is None or not Path(checkpoint).is_file()):
        raise FileNotFoundError(f"resume=True needs an existing checkpoint, got {checkpoint!r}")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.peak_lr, betas=cfg.betas)
    sampler = torch.Generator().manual_seed(cfg.seed)
    history, start = LMHistory(tokens_per_step=cfg.batch_size * cfg.block), 0
    if resume:
        state = torch.load(checkpoint, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError("the checkpoint was written by a different LMTrainConfig; resume with the same one")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        history, start = LMHistory(**state["history"]), state["step"]
    else:
        torch.manual_seed(cfg.seed)  # dropout draws

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "sampler": sampler.get_state(), "torch_rng": torch.get_rng_state(),
                "history": history.as_dict(), "config": asdict(cfg), "format": FORMAT,
            })

    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    model.train()
    bar = tqdm(range(start, end), desc="training", disable=not progress, initial=start, total=end)
    for step in bar:
        lr = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.peak_lr * cfg.min_lr_frac)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = data.batch(cfg.batch_size, cfg.block, sampler)
        loss = accumulate_gradients(model, x, y, cfg.grad_accum, cfg.autocast)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {step}; lower peak_lr or check the data")
        history.step.append(step)
        history.train_loss.append(loss)
        history.lr.append(lr)
        history.grad_norm.append(float(norm))
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            history.eval_step.append(done)
            history.val_loss.append(evaluate(model, data, cfg.block, cfg.eval_tokens, cfg.autocast))
            if sample is not None:
                history.samples.append((done, sample(model)))
                model.train()
            bar.set_postfix(train=f"{loss:.3f}", val=f"{history.val_loss[-1]:.3f}")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
            save(done)
    save(end)
    return history


def train_from_scratch(model_cfg, data: TokenData, cfg: LMTrainConfig, progress: bool = True,
                       sample: Callable[[nn.Module], str] | None = None):
    """A fresh MiniGPT (``model_cfg``: a GPTConfig) initialised from ``cfg.seed`` and trained: (model, history)."""
    from .model import MiniGPT

    if model_cfg.vocab_size != data.vocab_size:
        raise ValueError(f"the model's vocab_size={model_cfg.vocab_size} differs from the data's {data.vocab_size}")
    torch.manual_seed(cfg.seed)
    model = MiniGPT(model_cfg)
    return model, train_lm(model, data, cfg, sample=sample, progress=progress)


# ---------------------------------------------------------------------------------------------
# The book's model: trained once from a seed, cached, reused by later chapters
# ---------------------------------------------------------------------------------------------


@dataclass
class Recipe:
    """Everything that determines the book's trained model; its hash names the cache file."""

    prose_chars: int | None  # characters of the Python docs (None: all of them)
    code_chars: int  # characters of standard-library source added to the corpus
    vocab_size: int
    model: dict  # GPTConfig fields
    train: dict  # LMTrainConfig fields
    prompt: str = "The list"  # what the samples during training start from

    def key(self) -> str:
        text = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def recipe(smoke: bool) -> Recipe:
    """The book's model: ~2M parameters, a 1,024-token BPE on Python docs and stdlib code; a tiny one in SMOKE."""
    if smoke:
        return Recipe(prose_chars=120_000, code_chars=60_000, vocab_size=512,
                      model=dict(block_size=64, n_layer=2, n_head=4, n_embd=64),
                      train=dict(steps=150, batch_size=16, block=64, peak_lr=3e-3, warmup_steps=10, eval_every=50,
                                 eval_tokens=4096))
    return Recipe(prose_chars=None, code_chars=1_500_000, vocab_size=1024,
                  model=dict(block_size=128, n_layer=4, n_head=4, n_embd=192),
                  train=dict(steps=500, batch_size=32, block=128, peak_lr=2e-3, warmup_steps=50, eval_every=50,
                             eval_tokens=16_384))


@dataclass
class Pretrained:
    model: nn.Module
    tokenizer: object  # companion.tokenizer.Tokenizer
    data: TokenData
    history: LMHistory
    recipe: Recipe
    path: Path

    def encode(self, text: str) -> torch.Tensor:
        """text -> ids (1, T), ready for the model."""
        return torch.tensor([self.tokenizer.encode_ordinary(text)], dtype=torch.long)


def corpus_tokens(rcp: Recipe, cache: str | Path | None = None):
    """Train the recipe's tokenizer on its corpus and encode it: (tokenizer, TokenData).

    Prose and code are each split 90/10 and the pieces concatenated, so both splits hold the same mix.
    The merges and both splits are cached as ``<cache>/models/corpus-<recipe hash>.pt``: training
    the tokenizer and encoding the corpus take seconds, loading them milliseconds.
    """
    from .config import cache_dir
    from .data import python_docs, stdlib_code
    from .tokenizer import Tokenizer

    path = Path(cache or cache_dir()) / "models" / f"corpus-{rcp.key()}.pt"
    if path.is_file():
        state = torch.load(path, weights_only=True)
        if not isinstance(state, dict) or not {"merges", "pattern", "train", "val"} <= state.keys():
            raise ValueError(f"{path} is not a corpus cache (expected merges, pattern, train, val); delete it to rebuild")
        tok = Tokenizer.from_merges(state["merges"], state["pattern"])
        return tok, TokenData(state["train"], state["val"], tok.vocab_size)
    sources = [python_docs(max_chars=rcp.prose_chars), stdlib_code(max_chars=rcp.code_chars)]
    tok = Tokenizer().train("\n".join(sources), rcp.vocab_size)
    splits = [TokenData.from_ids(tok.encode_ordinary(text), tok.vocab_size) for text in sources if text]
    data = TokenData(torch.cat([s.train for s in splits]), torch.cat([s.val for s in splits]), tok.vocab_size)
    merges = [list(pair) for pair in sorted(tok.merges, key=tok.merges.__getitem__)]  # in id order
    save_checkpoint(path, {"merges": merges, "pattern": tok.pattern, "train": data.train, "val": data.val})
    return tok, data


def pretrained(smoke: bool, cache: str | Path | None = None, progress: bool = True) -> Pretrained:
    """The book's trained MiniGPT: loaded from the cache, or trained from the seed and cached.

    The cache file is ``<cache>/models/minigpt-<recipe hash>.pt`` (default cache:
    ``companion.config.cache_dir()``); the same recipe always trains the same weights.
    """
    from .config import cache_dir
    from .decoding import SamplingConfig, generate
    from .model import GPTConfig, MiniGPT

    rcp = recipe(smoke)
    path = Path(cache or cache_dir()) / "models" / f"minigpt-{rcp.key()}.pt"
    tok, data = corpus_tokens(rcp, cache)
    model_cfg, train_cfg = GPTConfig(vocab_size=rcp.vocab_size, **rcp.model), LMTrainConfig(**rcp.train)
    if path.is_file():
        state = torch.load(path, weights_only=False)
        model = MiniGPT(model_cfg)
        model.load_state_dict(state["model"])
        return Pretrained(model.eval(), tok, data, LMHistory(**state["history"]), rcp, path)

    prompt = torch.tensor([tok.encode_ordinary(rcp.prompt)])
    style = SamplingConfig(temperature=0.8, top_k=50)

    @torch.no_grad()
    def sample(m: nn.Module) -> str:
        out = generate(m.eval(), prompt, max_new_tokens=40, cfg=style, generator=torch.Generator().manual_seed(0),
                       max_context=model_cfg.block_size)
        return tok.decode(out[0].tolist())

    model, history = train_from_scratch(model_cfg, data, train_cfg, progress=progress, sample=sample)
    save_checkpoint(path, {"model": model.state_dict(), "history": history.as_dict(), "recipe": asdict(rcp)})
    return Pretrained(model.eval(), tok, data, history, rcp, path)


# ---------------------------------------------------------------------------------------------
# A draft model for speculative decoding: the book's model cut to its first layer, then distilled
# ---------------------------------------------------------------------------------------------


@dataclass
class DraftRecipe(Recipe):
    """A draft model's recipe: the teacher's corpus and tokenizer (so the vocabularies match), its own size.

    ``teacher`` is the key of the target's recipe; the draft starts from the teacher's embeddings,
    first ``n_layer`` blocks and final norm, and is trained to match the teacher's next-token
    distributions (distillation), which is what speculative decoding's acceptance rate rewards.
    """

    teacher: str = ""


def draft_recipe(smoke: bool) -> DraftRecipe:
    """The book's draft: the first block of the book's model (a quarter of its layers; SMOKE: half), distilled from it."""
    base = recipe(smoke)
    if smoke:
        model = dict(base.model, n_layer=1)
        train = dict(steps=60, batch_size=16, block=64, peak_lr=2e-3, warmup_steps=6, eval_every=30, eval_tokens=4096)
    else:
        model = dict(base.model, n_layer=1)
        train = dict(steps=300, batch_size=32, block=128, peak_lr=2e-3, warmup_steps=30, eval_every=100,
                     eval_tokens=16_384)
    return DraftRecipe(prose_chars=base.prose_chars, code_chars=base.code_chars, vocab_size=base.vocab_size,
                       model=model, train=train, prompt=base.prompt, teacher=base.key())


def distill_loss(student: nn.Module, teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's next-token distributions against the teacher's, −Σ p_teacher · log q_student.

    x (B, T) ids -> a scalar: the mean over positions. It equals KL(p ‖ q) plus the teacher's entropy,
    so minimizing it pulls q towards p everywhere, not only at the observed next token.
    """
    with torch.no_grad():
        p = torch.softmax(teacher(x).float(), dim=-1)  # (B, T, V)
    log_q = torch.log_softmax(student(x).float(), dim=-1)
    return -(p * log_q).sum(-1).mean()


def distill_lm(student: nn.Module, teacher: nn.Module, data: TokenData, cfg: LMTrainConfig,
               progress: bool = True) -> LMHistory:
    """Train ``student`` to match ``teacher`` on windows of ``data``: AdamW, warmup + cosine, clipping, as ``train_lm``.

    ``history.train_loss`` is the distillation loss; ``history.val_loss`` the student's ordinary
    validation loss (next-token cross-entropy), comparable with the teacher's.
    """
    if student.cfg.vocab_size != teacher.cfg.vocab_size:
        raise ValueError(f"student and teacher must share a vocabulary, got {student.cfg.vocab_size} "
                         f"and {teacher.cfg.vocab_size}")
    device = next(student.parameters()).device
    opt = torch.optim.AdamW(param_groups(student, cfg.weight_decay), lr=cfg.peak_lr, betas=cfg.betas)
    sampler = torch.Generator().manual_seed(cfg.seed)
    history = LMHistory(tokens_per_step=cfg.batch_size * cfg.block)
    teacher.eval()
    student.train()
    for step in tqdm(range(cfg.steps), desc="distilling", disable=not progress):
        lr = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.peak_lr * cfg.min_lr_frac)
        for group in opt.param_groups:
            group["lr"] = lr
        x, _ = data.batch(cfg.batch_size, cfg.block, sampler)
        with torch.enable_grad(), autocast_context(cfg.autocast, device):  # also inside a no_grad chapter
            loss = distill_loss(student, teacher, x.to(device))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.clip_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.step.append(step)
        history.train_loss.append(float(loss.detach()))
        history.lr.append(lr)
        history.grad_norm.append(float(norm))
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            history.eval_step.append(step + 1)
            history.val_loss.append(evaluate(student, data, cfg.block, cfg.eval_tokens, cfg.autocast))
            student.train()
    return history


def pretrained_draft(smoke: bool, cache: str | Path | None = None, progress: bool = True,
                     target: Pretrained | None = None) -> Pretrained:
    """The draft model for speculative decoding: loaded from the cache, or distilled from its target once.

    The target is the book's model, ``pretrained(smoke)`` (loaded when not given); the draft shares
    its tokenizer and data. Cached as ``<cache>/models/draft-<recipe hash>.pt``.
    """
    from .config import cache_dir
    from .model import GPTConfig, MiniGPT

    rcp = draft_recipe(smoke)
    target = target or pretrained(smoke, cache, progress)
    if target.recipe.key() != rcp.teacher:
        raise ValueError(f"target was trained by recipe {target.recipe.key()}, the draft's teacher is {rcp.teacher}")
    path = Path(cache or cache_dir()) / "models" / f"draft-{rcp.key()}.pt"
    model = MiniGPT(GPTConfig(vocab_size=rcp.vocab_size, **rcp.model))
    if path.is_file():
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"])
        return Pretrained(model.eval(), target.tokenizer, target.data, LMHistory(**state["history"]), rcp, path)
    keep = rcp.model["n_layer"]
    model.load_state_dict({k: v for k, v in target.model.state_dict().items()
                           if not k.startswith("blocks.") or int(k.split(".")[1]) < keep})
    train_cfg = LMTrainConfig(**rcp.train)
    torch.manual_seed(train_cfg.seed)
    history = distill_lm(model, target.model, target.data, train_cfg, progress=progress)
    save_checkpoint(path, {"model": model.state_dict(), "history": history.as_dict(), "recipe": asdict(rcp)})
    return Pretrained(model.eval(), target.tokenizer, target.data, history, rcp, path)
