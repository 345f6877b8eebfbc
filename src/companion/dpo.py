"""Preference optimization: a Bradley–Terry reward model, and DPO, on pairs of answers.

Preference data says, for a prompt x, that answer y_w was preferred to y_l. The Bradley–Terry
model (1952) turns a scalar reward into a probability of that preference,

    P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)),

so a reward model is trained by minimizing −log σ(r_w − r_l) — binary cross-entropy with logits
on the reward difference (Christiano et al., 2017; Ouyang et al., 2022). RLHF then maximizes that
reward with PPO under a KL penalty to the SFT model. DPO (Rafailov et al., 2023) skips both the
reward model and the sampling loop: the KL-regularized optimum satisfies
r(x, y) = β log π(y|x)/π_ref(y|x) + β log Z(x), and Z cancels in the difference, so the policy
itself is trained with the same Bradley–Terry loss on *implicit* rewards:

    L_DPO = −log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]).

At initialization (π = π_ref) the argument is 0 and the loss is log 2. β sets how far the policy
may move: the gradient is β·σ(−margin)·(∇log π(y_w) − ∇log π(y_l)), so a small β needs large
log-ratio changes (a large KL) before the pair counts as learned, and a large β stops early.

Sequences are (ids, labels) rows as in ``companion.sft``: labels −100 on the prompt and padding,
so a response's log-probability is the sum over its own tokens only.

References: Bradley & Terry (1952); Christiano et al., "Deep RL from human preferences" (2017);
Ouyang et al., "Training language models to follow instructions with human feedback" (2022);
Schulman et al., "Proximal Policy Optimization Algorithms" (2017); Rafailov et al., "Direct
Preference Optimization: Your Language Model is Secretly a Reward Model" (2023).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .sft import IGNORE, Example, check_schedule, example_tokens, pad
from .training import param_groups, warmup_cosine

SIGN_OFF = " Hope this helps."  # the preferred behaviour of the book's preference data


# ---------------------------------------------------------------------------------------------
# Log-probabilities of responses
# ---------------------------------------------------------------------------------------------


def _check_rows(ids: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(ids, torch.Tensor) or not isinstance(labels, torch.Tensor) or ids.shape != labels.shape \
            or ids.dim() != 2 or ids.dtype != torch.long or labels.dtype != torch.long:
        raise ValueError(f"ids and labels must both be long tensors (B, T), got "
                         f"{getattr(ids, 'shape', type(ids))} and {getattr(labels, 'shape', type(labels))}")


def token_logprobs(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(labels[t] | ids[:t+1]) at every position, 0 where the label is −100: (B, T) -> (B, T)."""
    _check_rows(ids, labels)
    logp = torch.log_softmax(model(ids).float(), dim=-1)  # (B, T, V)
    mask = labels != IGNORE
    picked = logp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return picked * mask


def sequence_logprob(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(response | prompt): the sum of the response tokens' log-probabilities. (B, T) -> (B,)."""
    return token_logprobs(model, ids, labels).sum(-1)


@torch.no_grad()
def token_kl(policy: nn.Module, ref: nn.Module, ids: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 64) -> float:
    """Mean KL(π ‖ π_ref) of the next-token distributions over the labelled positions (nats per token).

    The exact KL at each position (a sum over the vocabulary), on fixed held-out sequences: a
    deterministic measure of how far the policy has moved, with none of the noise of a sampled estimate.
    """
    _check_rows(ids, labels)
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        x, y = ids[i:i + batch_size], labels[i:i + batch_size]
        logp = torch.log_softmax(policy(x).float(), -1)
        logq = torch.log_softmax(ref(x).float(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T)
        mask = y != IGNORE
        total += float(kl[mask].sum())
        count += int(mask.sum())
    if not count:
        raise ValueError("labels are all -100: there is no position to measure the KL at")
    return total / count


# ---------------------------------------------------------------------------------------------
# The losses
# ---------------------------------------------------------------------------------------------


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean −log σ(r_chosen − r_rejected): the reward model's loss. (N,), (N,) -> a scalar."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen and r_rejected must have the same shape, got {tuple(r_chosen.shape)} "
                         f"and {tuple(r_rejected.shape)}")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


@dataclass
class DPOOutput:
    loss: torch.Tensor  # scalar
    chosen_reward: torch.Tensor  # (N,) β (log π(y_w) − log π_ref(y_w)), detached
    rejected_reward: torch.Tensor  # (N,) β (log π(y_l) − log π_ref(y_l)), detached

    @property
    def accuracy(self) -> float:
        """Share of pairs whose implicit reward ranks the chosen answer first."""
        return float((self.chosen_reward > self.rejected_reward).float().mean())

    @property
    def margin(self) -> float:
        return float((self.chosen_reward - self.rejected_reward).mean())


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> DPOOutput:
    """The DPO loss from sequence log-probabilities (N,) each, averaged over pairs, with the implicit rewards."""
    if not (isinstance(beta, (int, float)) and not isinstance(beta, bool) and beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1:
        raise ValueError(f"the four log-probability tensors must share one shape (N,), got {sorted(shapes)}")
    chosen_ratio = policy_chosen - ref_chosen  # log π(y_w)/π_ref(y_w)
    rejected_ratio = policy_rejected - ref_rejected
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    return DPOOutput(loss, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


# ---------------------------------------------------------------------------------------------
# Preference data
# ---------------------------------------------------------------------------------------------


def sign_off_pairs(examples: Sequence[Example], sign_off: str = SIGN_OFF) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) triples: the same answer with and without ``sign_off`` before its newline.

    A preference with a known ground truth: the only difference between the two answers is the
    behaviour to learn, so its rate in sampled answers measures what preference training did.
    """
    if not isinstance(sign_off, str) or not sign_off.strip() or "\n" in sign_off:
        raise ValueError(f"sign_off must be a non-empty single line, got {sign_off!r}")
    triples = []
    for ex in examples:
        body = ex.answer.rstrip("\n")
        if not body.strip():
            raise ValueError(f"the answer of {ex.prompt!r} is empty")
        triples.append((ex.prompt, body + sign_off + "\n", body + "\n"))
    return triples


@dataclass
class PreferenceBatch:
    """Chosen and rejected rows (N, T), each as (ids, labels) with −100 on prompt and padding."""

    chosen_ids: torch.Tensor
    chosen_labels: torch.Tensor
    rejected_ids: torch.Tensor
    rejected_labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.chosen_ids)

    def subset(self, rows: torch.Tensor) -> PreferenceBatch:
        return PreferenceBatch(self.chosen_ids[rows], self.chosen_labels[rows], self.rejected_ids[rows],
                               self.rejected_labels[rows])


def encode_preferences(tokenizer, triples: Sequence[tuple[str, str, str]], length: int) -> PreferenceBatch:
    """Tokenize (prompt, chosen, rejected) triples, keep those whose longer answer fits in ``length`` tokens, pad."""
    chosen, rejected = [], []
    for prompt, good, bad in triples:
        p = tokenizer.encode_ordinary(prompt)
        c = example_tokens(p, tokenizer.encode_ordinary(good))
        r = example_tokens(p, tokenizer.encode_ordinary(bad))
        if max(len(c[0]), len(r[0])) <= length:
            chosen.append(c)
            rejected.append(r)
    if not chosen:
        raise ValueError(f"no preference pair fits in {length} tokens")
    return PreferenceBatch(*pad(chosen, length), *pad(rejected, length))


# ---------------------------------------------------------------------------------------------
# A reward model: the language model's last hidden state, read out by a scalar head
# ---------------------------------------------------------------------------------------------


def last_positions(labels: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token: one past the last labelled position. (B, T) -> (B,)."""
    positions = torch.arange(labels.shape[1]).expand_as(labels)
    last = torch.where(labels != IGNORE, positions, -1).max(dim=1).values
    if bool((last < 0).any()):
        raise ValueError("a row has no labelled position, so it has no response to score")
    return last + 1


class RewardModel(nn.Module):
    """r(x, y): a copy of a MiniGPT whose final hidden state at the response's last token feeds a scalar head.

    The transformer is the language model's (a deep copy, so the policy is untouched); the
    head is new and starts at zero, so every reward starts at 0.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = copy.deepcopy(lm)
        self.head = nn.Linear(self.lm.cfg.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self._hidden: torch.Tensor | None = None
        self.lm.ln_f.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self._hidden = output  # (B, T, d): the final normalized hidden states

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Rewards (B,) of rows (ids, labels) (B, T): the head on the hidden state of each row's last token."""
        _check_rows(ids, labels)
        self.lm(ids)
        last = last_positions(labels)
        h = self._hidden[torch.arange(len(ids)), last]  # (B, d)
        return self.head(h.float()).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# Training loops
# ---------------------------------------------------------------------------------------------


@dataclass
class PrefConfig:
    steps: int = 100
    batch_size: int = 16
    peak_lr: float = 5e-4
    warmup_steps: int = 5
    beta: float = 0.1  # DPO only
    clip_norm: float = 1.0
    eval_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_schedule(self)
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta!r}")


@dataclass
class PrefHistory:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # on the training batch
    margin: list[float] = field(default_factory=list)  # mean reward of chosen minus rejected
    eval_step: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)  # DPO: token-level KL(π ‖ π_ref) on held-out rows


def _loop(model: nn.Module, data: PreferenceBatch, cfg: PrefConfig, step_fn, desc: str, progress: bool,
          on_eval=None) -> PrefHistory:
    opt = torch.optim.AdamW(param_groups(model, 0.0), lr=cfg.peak_lr, betas=(0.9, 0.95))
    params = [p for p in model.parameters() if p.requires_grad]
    sampler = torch.Generator().manual_seed(cfg.seed)
    history = PrefHistory()
    if on_eval is not None:
        history.eval_step.append(0)
        history.kl.append(on_eval())
    model.train()
    with torch.enable_grad():
        for step in tqdm(range(cfg.steps), desc=desc, disable=not progress):
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.peak_lr, 0.1 * cfg.peak_lr)
            rows = torch.randint(0, len(data), (min(cfg.batch_size, len(data)),), generator=sampler)
            loss, accuracy, margin = step_fn(rows)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            history.step.append(step)
            history.loss.append(loss.item())
            history.accuracy.append(accuracy)
            history.margin.append(margin)
            if on_eval is not None and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
                model.eval()
                history.eval_step.append(step + 1)
                history.kl.append(on_eval())
                model.train()
    model.eval()
    return history


def train_reward_model(rm: RewardModel, data: PreferenceBatch, cfg: PrefConfig, progress: bool = True) -> PrefHistory:
    """Fit a RewardModel with the Bradley–Terry loss on preference pairs."""
    def step_fn(rows):
        b = data.subset(rows)
        r_c, r_r = rm(b.chosen_ids, b.chosen_labels), rm(b.rejected_ids, b.rejected_labels)
        gap = (r_c - r_r).detach()
        return bradley_terry_loss(r_c, r_r), float((gap > 0).float().mean()), float(gap.mean())

    return _loop(rm, data, cfg, step_fn, "reward model", progress)


@torch.no_grad()
def reward_accuracy(rm: RewardModel, data: PreferenceBatch, batch_size: int = 64) -> float:
    """Share of pairs whose reward ranks the chosen answer above the rejected one."""
    was_training = rm.training
    rm.eval()
    wins = 0
    for i in range(0, len(data), batch_size):
        b = data.subset(torch.arange(i, min(i + batch_size, len(data))))
        wins += int((rm(b.chosen_ids, b.chosen_labels) > rm(b.rejected_ids, b.rejected_labels)).sum())
    rm.train(was_training)
    return wins / len(data)


def train_dpo(policy: nn.Module, ref: nn.Module, data: PreferenceBatch, cfg: PrefConfig,
              kl_rows: tuple[torch.Tensor, torch.Tensor] | None = None, progress: bool = True) -> PrefHistory:
    """Train ``policy`` with the DPO loss against the frozen ``ref``; track the token KL on ``kl_rows``.

    The reference's log-probabilities never change, so they are computed once for all pairs.
    """
    with torch.no_grad():
        ref.eval()
        ref_c = sequence_logprob(ref, data.chosen_ids, data.chosen_labels)
        ref_r = sequence_logprob(ref, data.rejected_ids, data.rejected_labels)

    def step_fn(rows):
        b = data.subset(rows)
        out = dpo_loss(sequence_logprob(policy, b.chosen_ids, b.chosen_labels),
                       sequence_logprob(policy, b.rejected_ids, b.rejected_labels), ref_c[rows], ref_r[rows], cfg.beta)
        return out.loss, out.accuracy, out.margin

    on_eval = None if kl_rows is None else (lambda: token_kl(policy, ref, *kl_rows))
    return _loop(policy, data, cfg, step_fn, f"DPO β={cfg.beta:g}", progress, on_eval)


__all__ = [
    "SIGN_OFF", "token_logprobs", "sequence_logprob", "token_kl", "bradley_terry_loss", "DPOOutput", "dpo_loss",
    "sign_off_pairs", "PreferenceBatch", "encode_preferences", "last_positions", "RewardModel", "PrefConfig",
    "PrefHistory", "train_reward_model", "reward_accuracy", "train_dpo",
]
