"""LoRA: fine-tune a frozen weight matrix through a trainable low-rank update.

A linear layer y = W₀x (W₀: out × in) is fine-tuned as

    y = W₀x + s · B(A·dropout(x)),    A: r × in,  B: out × r,  s = α / r   (rsLoRA: α / √r)

with W₀ frozen and only A and B trained (Hu et al., 2022). B starts at zero, so ΔW = s·BA = 0 and
the model starts exactly where the base model is; A starts like ``nn.Linear``'s weight
(``kaiming_uniform_`` with a = √5, as in peft) so that B's first gradients are not zero. A layer
trains r·(in + out) numbers instead of in·out: r = 16 on a 4096 × 4096 matrix is 131,072 against
16,777,216, 128× fewer.

- ``merge`` adds s·BA into W₀, after which the layer is an ordinary linear layer again: no extra
  latency at inference. ``unmerge`` subtracts it (to switch adapters).
- ``rslora`` (Kalajdzievski, 2023) scales by α/√r instead of α/r, so that the update's size does not
  shrink as r grows and high ranks learn as fast as low ones.
- ``QLoRALinear`` (Dettmers et al., 2023) keeps the frozen base in NF4 with double quantization
  (``companion.quant``), dequantizes it on the fly in the forward pass, and trains the same
  full-precision A and B on top: 4.127 bits per frozen weight instead of 16.
- ``finetune_memory`` is the calculator: bytes of weights, gradients, adapters and AdamW state for
  full fine-tuning, LoRA and QLoRA of a Llama-shaped model (``LLAMA``).

    >>> model = MiniGPT(cfg); add_lora(model, r=8, alpha=16, targets=("q_proj", "v_proj"))
    ['blocks.0.attn.q_proj', 'blocks.0.attn.v_proj', ...]
    >>> trainable_parameters(model)            # only the A and B matrices: 2 · n_layer · 8 · (d + d)
    >>> merge(model)                           # W₀ += (α/r)·BA in every adapted layer

References: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022);
Aghajanyan et al., "Intrinsic Dimensionality Explains the Effectiveness of Language Model
Fine-Tuning" (2021); Kalajdzievski, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA"
(2023); Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs" (2023); Rajbhandari et al.,
"ZeRO" (2020) for the 16-bytes-per-parameter accounting of mixed-precision Adam.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .quant import FORMAT_BITS, QuantLinear

# ---------------------------------------------------------------------------------------------
# One adapted layer
# ---------------------------------------------------------------------------------------------


def _check_rank(r: int, in_features: int, out_features: int, where: str = "") -> None:
    limit = min(in_features, out_features)
    if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= limit:
        raise ValueError(f"r must be an int in [1, min(in, out) = {limit}]{where}, got {r!r}")


def _check_hyper(alpha: float, dropout: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def lora_scaling(r: int, alpha: float, rslora: bool = False) -> float:
    """The factor s on BA: α / r, or α / √r with rsLoRA.  lora_scaling(16, 32) -> 2.0."""
    return alpha / math.sqrt(r) if rslora else alpha / r


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: (..., in) -> (..., out).

    ``base`` is an ``nn.Linear`` (weight out × in). ``lora_A`` (r, in) starts like peft's
    (``kaiming_uniform_``, a = √5), ``lora_B`` (out, r) at zero. ``merged`` says whether s·BA is
    currently added into the base weight; the output is the same either way.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        super().__init__()
        if not isinstance(base, (nn.Linear, QuantLinear)):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        _check_rank(r, base.in_features, base.out_features)
        _check_hyper(alpha, dropout)
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.alpha, self.rslora = r, float(alpha), rslora
        self.scaling = lora_scaling(r, alpha, rslora)
        for p in base.parameters():
            p.requires_grad_(False)
        like = next(iter(base.parameters()), None)
        kw = dict(dtype=torch.float32, device=like.device if like is not None else None)
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s · B A, (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        # the same operations, in the same order, as peft's LoRA Linear: B(A(dropout(x))) · s
        return y + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W₀ ← W₀ + s·BA: the layer now costs what the base layer costs. A no-op when already merged."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W₀ ← W₀ − s·BA: back to base + adapter (to train on, or to swap adapters)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"alpha={self.alpha:g}, scaling={self.scaling:.4g}, merged={self.merged}")


class QLoRALinear(LoRALinear):
    """LoRA over a quantized frozen base (QLoRA): the base weight is stored as NF4 codes with
    double-quantized block constants (``quant.QuantLinear``, scheme ``"nf4-dq"`` by default) and
    dequantized on the fly; A and B stay in fp32. (..., in) -> (..., out).

    The output equals ``LoRALinear`` over the dequantized weight. ``merge`` is refused: adding BA
    into a 4-bit weight would need a lossy requantization; ``merged_linear`` exports an fp32
    ``nn.Linear`` holding dequant(W₀) + s·BA instead.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0, rslora: bool = False,
                 scheme: str = "nf4-dq"):
        if not isinstance(base, nn.Linear):
            raise ValueError(f"base must be an nn.Linear, got {type(base).__name__}")
        _check_rank(r, base.in_features, base.out_features)
        super().__init__(QuantLinear(base, scheme), r, alpha, dropout, rslora)
        with torch.no_grad():  # start A on the base's device, not where QuantLinear's buffers were
            self.lora_A.data = self.lora_A.data.to(base.weight.device)
            self.lora_B.data = self.lora_B.data.to(base.weight.device)

    def merge(self) -> None:
        raise ValueError("a QLoRALinear cannot merge into its 4-bit base without requantizing; "
                         "use merged_linear() for an fp32 nn.Linear with the adapter folded in")

    def unmerge(self) -> None:
        pass  # never merged

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """An fp32 ``nn.Linear`` with weight dequant(W₀) + s·BA and the base's bias."""
        w = self.base.dequantized_weight() + self.delta_weight()
        out = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None, device=w.device)
        out.weight.copy_(w)
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        return out


# ---------------------------------------------------------------------------------------------
# A whole model
# ---------------------------------------------------------------------------------------------


def _matches(name: str, target: str) -> bool:
    """peft's rule: a module matches a target when its name is the target or ends with "." + target."""
    return name == target or name.endswith("." + target)


def add_lora(model: nn.Module, r: int, alpha: float, targets: Sequence[str], dropout: float = 0.0,
             rslora: bool = False, quantize: str | None = None) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` named by ``targets`` in a ``LoRALinear`` (in place).

    A module matches a target when its qualified name equals it or ends with "." + target, as in
    peft: ``("q_proj", "v_proj")`` is the LoRA paper's choice for attention; MiniGPT's full set is
    ``("q_proj", "k_proj", "v_proj", "out_proj", "fc", "proj")``. ``quantize`` ("nf4-dq", "nf4", or
    any ``quant.SCHEMES`` name) stores the adapted layers' frozen weights quantized (``QLoRALinear``).
    Returns the replaced modules' names, in order.
    """
    if isinstance(targets, str) or not isinstance(targets, Iterable):
        raise ValueError(f"targets must be a sequence of module names, got {targets!r}")
    targets = list(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be a non-empty sequence of non-empty strings, got {targets!r}")
    _check_hyper(alpha, dropout)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be an int >= 1, got {r!r}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already has LoRA layers; add_lora wraps a plain model once")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for t in targets:
        if not any(_matches(n, t) for n, _ in linears):
            raise ValueError(f"target {t!r} matches no nn.Linear in the model "
                             f"(linear layers end with: {sorted({n.rsplit('.', 1)[-1] for n, _ in linears})})")
    chosen = [(n, m) for n, m in linears if any(_matches(n, t) for t in targets)]
    for n, m in chosen:
        _check_rank(r, m.in_features, m.out_features, f" for {n} ({m.out_features} × {m.in_features})")
    for p in model.parameters():
        p.requires_grad_(False)
    for n, m in chosen:
        parent_name, _, child = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = QLoRALinear(m, r, alpha, dropout, rslora, quantize) if quantize else \
            LoRALinear(m, r, alpha, dropout, rslora)
        setattr(parent, child, layer)
    return [n for n, _ in chosen]


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """Every (name, LoRALinear) of ``model``; ValueError when there is none."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("model has no LoRA layers; call add_lora first")
    return layers


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (in place); returns the model."""
    for _, layer in lora_layers(model):
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Take every adapter back out of its base weight (in place); returns the model."""
    for _, layer in lora_layers(model):
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge, then replace each ``LoRALinear`` by its base ``nn.Linear`` (QLoRA: by ``merged_linear()``).

    The result is the base architecture again, with the fine-tuned weights: serving it costs exactly
    what serving the base model costs. In place; returns the model.
    """
    for name, layer in lora_layers(model):
        if isinstance(layer, QLoRALinear):
            plain = layer.merged_linear()
        else:
            layer.merge()
            plain = layer.base
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
    return model


def trainable_parameters(model: nn.Module) -> int:
    """Numbers that receive gradients (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters: {"<layer>.lora_A": (r, in), "<layer>.lora_B": (out, r)} — what a fine-tune ships."""
    return {f"{n}.{k}": getattr(m, k).detach().clone() for n, m in lora_layers(model) for k in ("lora_A", "lora_B")}


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapters saved by ``lora_state_dict`` into a model with the same LoRA layers (unmerged)."""
    layers = dict(lora_layers(model))
    expected = {f"{n}.{k}" for n in layers for k in ("lora_A", "lora_B")}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"state does not match the model's adapters: missing {missing[:3]}, unexpected {extra[:3]}")
    for key, value in state.items():
        name, _, kind = key.rpartition(".")
        layer = layers[name]
        if layer.merged:
            raise ValueError(f"{name} is merged; unmerge before loading other adapters")
        getattr(layer, kind).copy_(value)


def lora_parameter_count(shapes: Iterable[tuple[int, int]], r: int) -> int:
    """Adapter parameters for weight matrices of the given (out, in) shapes: Σ r · (in + out).

    >>> lora_parameter_count([(4096, 4096)], 16)   # against 16,777,216 for the full matrix
    131072
    """
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"r must be an int >= 1, got {r!r}")
    total = 0
    for shape in shapes:
        out_f, in_f = shape
        _check_rank(r, in_f, out_f, f" for a {out_f} × {in_f} matrix")
        total += r * (in_f + out_f)
    return total


# ---------------------------------------------------------------------------------------------
# Why low rank: how much of a fine-tuning update the top singular directions hold
# ---------------------------------------------------------------------------------------------


def energy_captured(delta: torch.Tensor, ranks: Sequence[int] | None = None) -> torch.Tensor:
    """Share of ‖ΔW‖²_F in the best rank-k approximation, for k = 1..min(out, in) (or ``ranks``).

    By Eckart–Young the best rank-k approximation keeps the top k singular values, so the share is
    Σ_{i≤k} σ_i² / Σ σ_i². A rank-k matrix reaches 1 at k. ΔW (out, in) -> (len(ranks),) float64.
    """
    if not isinstance(delta, torch.Tensor) or delta.dim() != 2 or not delta.is_floating_point():
        raise ValueError(f"delta must be a 2-D floating-point tensor, got {getattr(delta, 'shape', type(delta))}")
    s2 = torch.linalg.svdvals(delta.double()).pow(2)
    total = s2.sum()
    if not total > 0:
        raise ValueError("delta is all zeros: there is no update to decompose")
    cum = s2.cumsum(0) / total
    if ranks is None:
        return cum
    idx = torch.tensor([min(int(k), len(cum)) - 1 for k in ranks])
    if (idx < 0).any():
        raise ValueError(f"ranks must be >= 1, got {list(ranks)}")
    return cum[idx]


# ---------------------------------------------------------------------------------------------
# The memory calculator
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaShape:
    """A Llama-style decoder's sizes: enough to list its weight matrices and count its parameters."""

    d_model: int
    n_layers: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    vocab: int
    tied: bool = False

    def linear_shapes(self, targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj")) -> list[tuple[int, int]]:
        """(out, in) of every targeted projection in every layer."""
        d, kv = self.d_model, self.d_model // self.n_heads * self.n_kv_heads
        per_layer = {"q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "o_proj": (d, d),
                     "gate_proj": (self.d_ff, d), "up_proj": (self.d_ff, d), "down_proj": (d, self.d_ff)}
        unknown = [t for t in targets if t not in per_layer]
        if unknown:
            raise ValueError(f"targets must be among {list(per_layer)}, got {unknown}")
        return [per_layer[t] for _ in range(self.n_layers) for t in targets]

    def n_linear(self) -> int:
        """Parameters in the blocks' projection matrices (what QLoRA stores in NF4)."""
        return sum(o * i for o, i in self.linear_shapes())

    def n_params(self) -> int:
        """Total: projections + two RMSNorm gains per layer + the final norm + embedding (+ untied head)."""
        return self.n_linear() + (2 * self.n_layers + 1) * self.d_model + self.vocab * self.d_model * (1 if self.tied else 2)


# Published configurations (config.json of each checkpoint).
LLAMA = {
    "7B": LlamaShape(4096, 32, 11008, 32, 32, 32000),  # Llama-2-7B
    "8B": LlamaShape(4096, 32, 14336, 32, 8, 128256),  # Llama-3-8B
    "13B": LlamaShape(5120, 40, 13824, 40, 40, 32000),  # Llama-2-13B
    "65B": LlamaShape(8192, 80, 22016, 64, 64, 32000),  # LLaMA-65B (the QLoRA paper's largest)
    "70B": LlamaShape(8192, 80, 28672, 64, 8, 32000),  # Llama-2-70B
}

METHODS = ("full", "lora", "qlora")


@dataclass(frozen=True)
class FinetuneMemory:
    """Bytes held during fine-tuning, activations excluded (they depend on batch and sequence length)."""

    method: str
    weights: float  # the (frozen or trained) base model
    gradients: float  # of whatever trains: every weight (full) or only the adapters
    adapters: float  # the LoRA matrices themselves
    optimizer: float  # AdamW's two moments (+ the fp32 master copy in full mixed-precision training)

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.adapters + self.optimizer


def finetune_memory(n_params: float, method: str, r: int = 16, shapes: Iterable[tuple[int, int]] = (),
                    quantized_params: float | None = None, weight_bytes: float = 2.0,
                    adapter_bytes: float = 4.0) -> FinetuneMemory:
    """Memory of fine-tuning ``n_params`` parameters with AdamW, by method. Assumptions:

    - **full**: mixed precision as in ZeRO (Rajbhandari et al., 2020): bf16/fp16 weights (2 B) and
      gradients (2 B), an fp32 master copy (4 B) and fp32 Adam moments (4 + 4 B) — 16 bytes/param.
    - **lora**: the base frozen in bf16 (``weight_bytes`` = 2), no gradient for it; adapters of
      Σ r·(in+out) parameters (``shapes``: the adapted matrices' (out, in)) in fp32 (peft's default,
      ``adapter_bytes`` = 4) with fp32 gradients and fp32 Adam moments — 16 bytes per adapter param.
    - **qlora**: as lora, but ``quantized_params`` of the base (default: all of it) stored in NF4
      with double quantization, 4.127 bits/param (Dettmers et al., 2023); the rest in bf16.

    Activations, temporary buffers and the framework's own overhead are not included.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or not n_params > 0:
        raise ValueError(f"n_params must be a number > 0, got {n_params!r}")
    if method == "full":
        return FinetuneMemory(method, weights=2 * n_params, gradients=2 * n_params, adapters=0.0,
                              optimizer=(4 + 4 + 4) * n_params)
    shapes = list(shapes)
    if not shapes:
        raise ValueError(f"method={method!r} needs shapes: the (out, in) of the adapted matrices")
    n_lora = lora_parameter_count(shapes, r)
    if method == "lora":
        base = weight_bytes * n_params
    else:
        q = n_params if quantized_params is None else quantized_params
        if not 0 < q <= n_params:
            raise ValueError(f"quantized_params must be in (0, n_params={n_params}], got {quantized_params!r}")
        base = q * FORMAT_BITS["nf4-dq"] / 8 + (n_params - q) * weight_bytes
    return FinetuneMemory(method, weights=base, gradients=adapter_bytes * n_lora, adapters=adapter_bytes * n_lora,
                          optimizer=8.0 * n_lora)


def llama_finetune_memory(name: str, method: str, r: int = 16,
                          targets: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj")) -> FinetuneMemory:
    """``finetune_memory`` for a model of ``LLAMA`` (QLoRA quantizes its projection matrices, not the embeddings)."""
    if name not in LLAMA:
        raise ValueError(f"name must be one of {list(LLAMA)}, got {name!r}")
    shape = LLAMA[name]
    return finetune_memory(shape.n_params(), method, r, shape.linear_shapes(targets), quantized_params=shape.n_linear())


def adamw_state_bytes(params: Iterable[torch.Tensor]) -> int:
    """What ``torch.optim.AdamW`` will hold for these parameters after one step, predicted.

    Two moments (exp_avg, exp_avg_sq) of each parameter's shape and dtype, plus a 0-d fp32 ``step``
    counter per tensor: Σ (2 · numel · element_size + 4).
    """
    return sum(2 * p.numel() * p.element_size() + 4 for p in params)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in an optimizer's state, measured (0 before the first step)."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor))


__all__ = ["FinetuneMemory", "LLAMA", "LlamaShape", "LoRALinear", "METHODS", "QLoRALinear", "adamw_state_bytes",
           "add_lora", "energy_captured", "finetune_memory", "llama_finetune_memory", "load_lora_state_dict",
           "lora_layers", "lora_parameter_count", "lora_scaling", "lora_state_dict", "merge", "merge_and_unload",
           "optimizer_state_bytes", "trainable_parameters", "unmerge"]
