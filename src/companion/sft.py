"""Supervised fine-tuning (SFT): teaching a pretrained model to answer, with prompt masking and packing.

A pretrained model continues text; an instruction-tuned one answers. SFT gets from one to the
other with the pretraining loss on (prompt, answer) pairs — with one change: the loss counts only
the answer's tokens. Each example becomes token ids and labels, shifted by one as in pretraining,
with the label −100 (PyTorch's ``ignore_index``) wherever the next token belongs to the prompt:

    prompt "Q: What is X?\\nA:"  answer " X is ...\\n"
    ids     [q0 q1 ... qP-1 a0 a1 ... aN-1]
    labels  [-100 ... -100 a0 a1 ... aN-1 -100]       labels[t] is what position t must predict

**Packing** concatenates examples into fixed-length rows so that no compute is spent on padding.
Because each example's labels are shifted *inside* the example, the first token of the next
example is never a target of the last token of the previous one, and every answer token is a
target exactly once. Here an example never straddles two rows (a row is filled while the next
example fits, then padded), and attention is **not** isolated: a packed example can attend to the
examples before it in its row, as in plain concatenation packing; attention-isolating packing needs
a block-diagonal mask (or varlen kernels), which MiniGPT's fused attention does not take.

The instruction set is built offline from the Python documentation (``pydoc_data.topics``): three
kinds of questions — what a documented method does (its first sentence), what a section of the
reference says (its first prose sentence), and the grammar rule of a non-terminal — split into
training and validation by documentation topic, so validation questions come from topics the model
never saw answered.

References: Ouyang et al., "Training language models to follow instructions with human feedback"
(2022) — SFT as the first stage of InstructGPT; Hu et al., "LoRA" (2021) for the adapter runs
(``companion.lora``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .training import param_groups, warmup_cosine

IGNORE = -100  # the label of a position that does not count: F.cross_entropy's default ignore_index


# ---------------------------------------------------------------------------------------------
# The instruction set, from the Python documentation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One instruction pair. ``prompt`` ends with "A:"; ``answer`` starts with a space and ends with a newline."""

    prompt: str
    answer: str
    topic: str  # the documentation topic it came from: the unit of the train/val split
    kind: str  # "method", "section" or "grammar"


def _clean(text: str) -> str:
    return " ".join(text.split())


def _first_sentence(paragraph: str) -> str:
    """The paragraph up to its first full stop followed by a space (or the whole paragraph)."""
    text = _clean(paragraph)
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.(\s|$)", text)
    return text[: m.start() + 1] if m else text


def _is_prose(paragraph: str) -> bool:
    p = paragraph.strip("\n")
    return bool(p) and not p.startswith((" ", "*", "-", "=", ">>>")) and "::=" not in p and len(_clean(p)) > 20


def _format(question: str, answer: str, topic: str, kind: str) -> Example:
    return Example(f"Q: {question}\nA:", f" {answer}\n", topic, kind)


def _topic_examples(topic: str, text: str) -> list[Example]:
    """Every question a topic's text answers: its methods, its sections and its grammar rules."""
    out: list[Example] = []
    for m in re.finditer(r"^([A-Za-z_][\w.]*)\(([^)\n]*)\)\n\n((?:   .*\n|\n(?=   ))+)", text, re.M):
        body = m.group(3).split("\n\n")[0]
        out.append(_format(f"What does {m.group(1)}() do?", _first_sentence(body), topic, "method"))
    lines = text.split("\n")
    for i in range(1, len(lines)):  # a heading is a line underlined with =, - or * of its own length
        if re.fullmatch(r"[=\-*]{3,}", lines[i]) and len(lines[i]) == len(lines[i - 1].rstrip()) and lines[i - 1].strip():
            heading = lines[i - 1].strip()
            rest = "\n".join(lines[i + 1:]).split("\n\n")
            for paragraph in rest[:6]:
                if re.fullmatch(r"[=\-*]{3,}", paragraph.strip().split("\n")[-1]):
                    break  # the next heading came before any prose
                if _is_prose(paragraph):
                    subject = heading.replace('"', "`")
                    out.append(_format(f"What does the reference say about {subject}?", _first_sentence(paragraph),
                                       topic, "section"))
                    break
    for m in re.finditer(r"^   ([a-z_]+) +::= (.+)$", text, re.M):
        out.append(_format(f"What is the grammar rule for {m.group(1)}?", f"{m.group(1)} ::= {_clean(m.group(2))}",
                           topic, "grammar"))
    return out


def _in_val(topic: str, val_frac: float) -> bool:
    h = int(hashlib.sha256(topic.encode()).hexdigest()[:8], 16)
    return h / 16**8 < val_frac


def instruction_set(val_frac: float = 0.15) -> tuple[list[Example], list[Example]]:
    """The book's instruction pairs (train, val) from ``pydoc_data.topics``, split by topic; deterministic.

    A question asked in two topics (the special methods appear in several) is kept once, in the
    first topic in sorted order, so no validation question is also a training question.
    """
    if not 0 < val_frac < 1:
        raise ValueError(f"val_frac must be in (0, 1), got {val_frac!r}")
    from pydoc_data.topics import topics

    seen: set[str] = set()
    train, val = [], []
    for topic in sorted(topics):
        for ex in _topic_examples(topic, topics[topic]):
            if ex.prompt in seen or len(ex.answer.strip()) < 5:
                continue
            seen.add(ex.prompt)
            (val if _in_val(topic, val_frac) else train).append(ex)
    return train, val


# ---------------------------------------------------------------------------------------------
# Tokens and labels: prompt masking
# ---------------------------------------------------------------------------------------------


def _check_ids(name: str, ids: Sequence[int], allow_empty: bool = False) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D sequence of int token ids, got {ids.dtype} {tuple(ids.shape)}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise ValueError(f"{name} must be a sequence of int token ids, got {ids!r:.80}")
    if any(t < 0 for t in ids):
        raise ValueError(f"{name} must hold token ids >= 0, got {min(ids)}")
    if not ids and not allow_empty:
        raise ValueError(f"{name} must hold at least one token, got an empty sequence")
    return list(ids)


def example_tokens(prompt_ids: Sequence[int], answer_ids: Sequence[int],
                   mask_prompt: bool = True) -> tuple[list[int], list[int]]:
    """(ids, labels) of one example: ids = prompt + answer, labels[t] = ids[t + 1] or −100.

    With ``mask_prompt`` only the answer's tokens are targets (the last prompt position predicts
    the first answer token); without it every next token is, as in pretraining. The last position
    has nothing after it, so its label is −100 either way.

        >>> example_tokens([5, 6], [7, 8])
        ([5, 6, 7, 8], [-100, 7, 8, -100])
    """
    prompt, answer = _check_ids("prompt_ids", prompt_ids), _check_ids("answer_ids", answer_ids)
    ids = prompt + answer
    labels = ids[1:] + [IGNORE]
    if mask_prompt:
        labels[: len(prompt) - 1] = [IGNORE] * (len(prompt) - 1)
    return ids, labels


def encode_example(tokenizer, ex: Example, mask_prompt: bool = True) -> tuple[list[int], list[int]]:
    """An Example tokenized with the book's BPE (prompt and answer separately, so the boundary is exact)."""
    if not ex.answer.strip():
        raise ValueError(f"the answer of {ex.prompt!r} is empty; every example needs an answer to learn")
    return example_tokens(tokenizer.encode_ordinary(ex.prompt), tokenizer.encode_ordinary(ex.answer), mask_prompt)


def encode_all(tokenizer, examples: Sequence[Example], max_len: int,
               mask_prompt: bool = True) -> list[tuple[list[int], list[int]]]:
    """Tokenize examples and keep those of at most ``max_len`` tokens (a model's context): a list of (ids, labels)."""
    encoded = (encode_example(tokenizer, ex, mask_prompt) for ex in examples)
    return [pair for pair in encoded if len(pair[0]) <= max_len]


def _check_examples(examples: Sequence[tuple[Sequence[int], Sequence[int]]], length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"block must be an int >= 2, got {length!r}")
    if not examples:
        raise ValueError("examples is empty; pass at least one (ids, labels) pair")
    for i, (ids, labels) in enumerate(examples):
        _check_ids(f"examples[{i}] ids", ids)
        if len(labels) != len(ids) or not all(isinstance(t, int) and not isinstance(t, bool) for t in labels):
            raise ValueError(f"examples[{i}]: labels must be ints, one per id, got {len(labels)} for {len(ids)} ids")
        if len(ids) > length:
            raise ValueError(f"examples[{i}] has {len(ids)} tokens, more than the block of {length}; "
                             f"drop or shorten it (encode_all(..., max_len) does)")


def pad(examples: Sequence[tuple[Sequence[int], Sequence[int]]], length: int,
        pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One example per row, right-padded to ``length``: ids (N, length), labels (N, length) with −100 on padding."""
    _check_examples(examples, length)
    ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
    return ids, labels


def pack(examples: Sequence[tuple[Sequence[int], Sequence[int]]], block: int,
         pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack examples in order into rows of ``block`` tokens: ids (N, block), labels (N, block).

    A row takes examples while the next one fits whole, then is padded (labels −100) and a new row
    starts; an example is never split across rows. Labels were shifted inside each example, so no
    position learns to predict the next example's first token, and each answer token is a target
    exactly once. Attention is not isolated between the examples of a row.
    """
    _check_examples(examples, block)
    rows: list[tuple[list[int], list[int]]] = [([], [])]
    for ids, labels in examples:
        if len(rows[-1][0]) + len(ids) > block:
            rows.append(([], []))
        rows[-1][0].extend(ids)
        rows[-1][1].extend(labels)
    return pad(rows, block, pad_id)


# ---------------------------------------------------------------------------------------------
# The loss and the loop
# ---------------------------------------------------------------------------------------------


def sft_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not −100. ids, labels (B, T) -> a scalar."""
    if ids.shape != labels.shape or ids.dim() != 2:
        raise ValueError(f"ids and labels must both be (B, T), got {tuple(ids.shape)} and {tuple(labels.shape)}")
    if not bool((labels != IGNORE).any()):
        raise ValueError("labels are all -100: there is no answer token to compute a loss on")
    logits = model(ids).float()  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def masked_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> float:
    """Mean cross-entropy over every labelled position of a whole set (token-weighted, in batches)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        x, y = ids[i:i + batch_size], labels[i:i + batch_size]
        n = int((y != IGNORE).sum())
        if n:
            total += float(sft_loss(model, x, y)) * n
            count += n
    model.train(was_training)
    if not count:
        raise ValueError("labels are all -100: there is no token to evaluate")
    return total / count


def trainable_count(model: nn.Module) -> int:
    """Parameters that receive gradients (counted once, so a tied head is not counted twice)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class SFTConfig:
    steps: int = 200
    batch_size: int = 16
    peak_lr: float = 1e-3
    warmup_steps: int = 10
    min_lr_frac: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    eval_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        check_schedule(self)


def check_schedule(cfg) -> None:
    """Shared checks of a training-loop config: steps, batch_size, eval_every, warmup_steps, peak_lr."""
    for name in ("steps", "batch_size", "eval_every"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not 0 <= cfg.warmup_steps < cfg.steps:
        raise ValueError(f"warmup_steps must be in [0, steps={cfg.steps}), got {cfg.warmup_steps!r}")
    if not cfg.peak_lr > 0:
        raise ValueError(f"peak_lr must be > 0, got {cfg.peak_lr!r}")


@dataclass
class SFTHistory:
    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)  # on the validation set's labelled tokens


def train_sft(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor, cfg: SFTConfig,
              val: tuple[torch.Tensor, torch.Tensor] | None = None, progress: bool = True) -> SFTHistory:
    """Fine-tune the parameters that require grad on rows (ids, labels) (N, T): AdamW, warmup + cosine, clipping.

    Full fine-tuning leaves every parameter trainable; after ``lora.add_lora`` only the adapters
    are. ``val`` (ids, labels) is evaluated before training (step 0) and every ``eval_every`` steps.
    """
    if ids.shape != labels.shape or ids.dim() != 2:
        raise ValueError(f"ids and labels must both be (N, T), got {tuple(ids.shape)} and {tuple(labels.shape)}")
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.peak_lr, betas=(0.9, 0.95))
    sampler = torch.Generator().manual_seed(cfg.seed)
    history = SFTHistory()
    if val is not None:
        history.eval_step.append(0)
        history.val_loss.append(masked_loss(model, *val))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        for step in tqdm(range(cfg.steps), desc="SFT", disable=not progress):
            lr = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, cfg.peak_lr * cfg.min_lr_frac)
            for group in opt.param_groups:
                group["lr"] = lr
            rows = torch.randint(0, len(ids), (min(cfg.batch_size, len(ids)),), generator=sampler)
            loss = sft_loss(model, ids[rows], labels[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the SFT loss became {loss.item()} at step {step}; lower peak_lr")
            history.step.append(step)
            history.train_loss.append(loss.item())
            if val is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                history.eval_step.append(step + 1)
                history.val_loss.append(masked_loss(model, *val))
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# Answering: sampling an answer after each prompt
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_answers(model: nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int, cfg=None,
                   generator: torch.Generator | None = None, n_samples: int = 1) -> list[list[str]]:
    """``n_samples`` answers per prompt, each cut after its first newline: a list (per prompt) of lists of str.

    Prompts of equal token length are generated as one batch (no padding is needed, so no
    attention mask either). ``cfg``: a ``decoding.SamplingConfig`` (default: plain sampling, T = 1).
    """
    from .decoding import SamplingConfig, generate

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    cfg = cfg or SamplingConfig()
    encoded = [tokenizer.encode_ordinary(p) for p in prompts]
    block = model.cfg.block_size
    out: list[list[str]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        if len(ids) + max_new_tokens > block:
            raise ValueError(f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it exceeds "
                             f"the model's context of {block}")
        by_length.setdefault(len(ids), []).append(i)
    for length, group in sorted(by_length.items()):
        batch = torch.tensor([encoded[i] for i in group]).repeat_interleave(n_samples, dim=0)
        new = generate(model, batch, max_new_tokens, cfg, generator)[:, length:]
        for row, i in enumerate(group):
            for s in range(n_samples):
                text = tokenizer.decode(new[row * n_samples + s].tolist())
                out[i].append(text.split("\n")[0] + "\n" if "\n" in text else text)
    return out


__all__ = [
    "IGNORE", "Example", "instruction_set", "example_tokens", "encode_example", "encode_all", "pad", "pack",
    "sft_loss", "masked_loss", "trainable_count", "SFTConfig", "SFTHistory", "train_sft", "sample_answers",
]
