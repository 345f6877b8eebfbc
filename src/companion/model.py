"""MiniGPT: a GPT-2-compatible decoder whose modern options are switched by its config.

With the defaults it is GPT-2 (Radford et al., 2019): learned position embeddings, pre-LayerNorm
blocks, GELU MLP of width 4·d, biases everywhere, and an output head tied to the token embedding.
Loading a Hugging Face GPT-2 state dict (``load_hf_gpt2``) gives logits equal to
``transformers.GPT2LMHeadModel``'s. The Llama-style options — RoPE instead of learned positions,
RMSNorm instead of LayerNorm, SwiGLU instead of GELU, fewer key/value heads (GQA) — are one config
field each, so a chapter can measure what each one costs and buys.

    >>> cfg = GPTConfig(vocab_size=100, block_size=32, n_layer=2, n_head=4, n_embd=64)
    >>> MiniGPT(cfg)(torch.zeros(1, 5, dtype=torch.long)).shape    # ids (B, T) -> logits (B, T, V)
    torch.Size([1, 5, 100])

References:
- Radford et al., "Language Models are Unsupervised Multitask Learners" (2019): GPT-2.
- Zhang & Sennrich, "Root Mean Square Layer Normalization" (2019): RMSNorm.
- Shazeer, "GLU Variants Improve Transformer" (2020): SwiGLU.
- Touvron et al., "LLaMA" (2023): RoPE + RMSNorm + SwiGLU together; Karpathy's nanoGPT for the layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionConfig, MultiHeadAttention


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # the longest context
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None  # None = n_head; fewer for GQA, 1 for MQA
    positions: str = "learned"  # "learned" (GPT-2) or "rope"
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm"
    mlp: str = "gelu"  # "gelu" (GPT-2, width 4·d) or "swiglu" (width ≈ 8/3·d, three matrices)
    bias: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.positions not in ("learned", "rope"):
            raise ValueError(f"positions must be 'learned' or 'rope', got {self.positions!r}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"mlp must be 'gelu' or 'swiglu', got {self.mlp!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        AttentionConfig(self.n_embd, self.n_head, self.n_kv_head)  # checks the head arithmetic

    @property
    def swiglu_hidden(self) -> int:
        """SwiGLU's width: 2/3 of 4·d so its three matrices hold as many weights as GELU's two, rounded up to 8."""
        return 8 * math.ceil(2 * 4 * self.n_embd / 3 / 8)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · g: LayerNorm without the mean subtraction and the bias. (..., d) -> (..., d)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(cfg: GPTConfig) -> nn.Module:
    """The config's normalization over the last dimension (n_embd)."""
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


class MLP(nn.Module):
    """GELU: W2·gelu(W1·x). SwiGLU: W2·(silu(W1·x) ⊙ W3·x). (B, T, d) -> (B, T, d)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.kind = cfg.mlp
        hidden = 4 * cfg.n_embd if cfg.mlp == "gelu" else cfg.swiglu_hidden
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias) if cfg.mlp == "swiglu" else None
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            h = F.gelu(self.fc(x), approximate="tanh")  # GPT-2's "gelu_new"
        else:
            h = F.silu(self.fc(x)) * self.gate(x)
        return self.drop(self.proj(h))


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1, self.ln_2 = make_norm(cfg), make_norm(cfg)
        self.attn = MultiHeadAttention(AttentionConfig(
            d_model=cfg.n_embd, n_heads=cfg.n_head, n_kv_heads=cfg.n_kv_head,
            positions="rope" if cfg.positions == "rope" else "none", max_positions=cfg.block_size, bias=cfg.bias,
        ))
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, need_weights: bool = False, cache=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.ln_1(x), causal=True, need_weights=need_weights, cache=cache)
        x = x + self.drop(attended)
        return x + self.mlp(self.ln_2(x)), weights


class MiniGPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied: the output head reuses the token embedding
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2·L)
            if name.endswith(("out_proj.weight", "mlp.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor, return_attention: bool = False, cache=None):
        """ids (B, T) long -> logits (B, T, V); with ``return_attention`` also a list of (B, H, T, T), one per layer.

        Without ``return_attention`` attention runs in PyTorch's fused kernel (no (T, T) weights kept).
        With a ``cache`` (``kvcache.KVCache``), ids are the next T tokens after the cached ones: their
        keys and values are stored and the cache advances by T.
        """
        if ids.dim() != 2 or ids.dtype != torch.long:
            raise ValueError(f"ids must be a long tensor (B, T), got {ids.dtype} {tuple(ids.shape)}")
        b, t = ids.shape
        offset = 0 if cache is None else cache.length
        if offset + t > self.cfg.block_size:
            raise ValueError(f"sequence of length {offset + t} exceeds block_size={self.cfg.block_size}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.cfg.vocab_size):
            raise ValueError(f"ids must be in [0, vocab_size={self.cfg.vocab_size}), got [{int(ids.min())}, {int(ids.max())}]")
        x = self.wte(ids)  # (B, T, d)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(offset, offset + t, device=ids.device))
        x = self.drop(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x, weights = block(x, need_weights=return_attention, cache=None if cache is None else cache.layer(i))
            maps.append(weights)
        if cache is not None:
            cache.advance()
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return (logits, maps) if return_attention else logits

    def n_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied head is the embedding); ``non_embedding`` drops wte and wpe."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.wpe is not None else 0)
        return total


def gpt2_param_count(cfg: GPTConfig) -> int:
    """The parameter count of a GPT-2-style config by formula (learned positions, LayerNorm, GELU, biases, MHA).

    Per layer: attention 4·d² + 4·d, MLP 8·d² + 5·d, two LayerNorms 4·d, i.e. 12·d² + 13·d; plus
    embeddings V·d + T·d and the final LayerNorm 2·d. The tied head adds nothing.
    """
    d = cfg.n_embd
    return cfg.n_layer * (12 * d * d + 13 * d) + cfg.vocab_size * d + cfg.block_size * d + 2 * d


def load_hf_gpt2(model: MiniGPT, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy a Hugging Face ``GPT2LMHeadModel`` state dict into a GPT-2-configured MiniGPT.

    HF's GPT-2 stores its projections as ``Conv1D`` with weights (in, out): they are transposed here.
    The fused ``c_attn`` (d, 3d) splits into q, k, v.
    """
    cfg = model.cfg
    if (cfg.positions, cfg.norm, cfg.mlp, cfg.bias) != ("learned", "layernorm", "gelu", True) or \
            (cfg.n_kv_head or cfg.n_head) != cfg.n_head:
        raise ValueError("load_hf_gpt2 needs a GPT-2 config: learned positions, layernorm, gelu, biases, no GQA")
    sd = {k.removeprefix("transformer."): v for k, v in state_dict.items()}
    needed = ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"] + [
        f"h.{i}.{name}" for i in range(cfg.n_layer) for name in (
            "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight",
            "mlp.c_proj.bias")]
    missing = [key for key in needed if key not in sd]
    if missing:
        raise ValueError(f"the state dict is not a GPT-2 of this depth: missing {missing[0]!r} "
                         f"and {len(missing) - 1} more")
    expected = sd["wte.weight"].shape
    if expected != model.wte.weight.shape:
        raise ValueError(f"the state dict has wte {tuple(expected)} but the model has {tuple(model.wte.weight.shape)}")
    with torch.no_grad():
        model.wte.weight.copy_(sd["wte.weight"])
        model.wpe.weight.copy_(sd["wpe.weight"])
        model.ln_f.weight.copy_(sd["ln_f.weight"])
        model.ln_f.bias.copy_(sd["ln_f.bias"])
        for i, block in enumerate(model.blocks):
            p = f"h.{i}."
            for ours, theirs in ((block.ln_1, "ln_1"), (block.ln_2, "ln_2")):
                ours.weight.copy_(sd[p + theirs + ".weight"])
                ours.bias.copy_(sd[p + theirs + ".bias"])
            w_q, w_k, w_v = sd[p + "attn.c_attn.weight"].t().chunk(3)  # (3d, d) -> three (d, d)
            b_q, b_k, b_v = sd[p + "attn.c_attn.bias"].chunk(3)
            attn = block.attn
            for proj, w, b in ((attn.q_proj, w_q, b_q), (attn.k_proj, w_k, b_k), (attn.v_proj, w_v, b_v)):
                proj.weight.copy_(w)
                proj.bias.copy_(b)
            attn.out_proj.weight.copy_(sd[p + "attn.c_proj.weight"].t())
            attn.out_proj.bias.copy_(sd[p + "attn.c_proj.bias"])
            block.mlp.fc.weight.copy_(sd[p + "mlp.c_fc.weight"].t())
            block.mlp.fc.bias.copy_(sd[p + "mlp.c_fc.bias"])
            block.mlp.proj.weight.copy_(sd[p + "mlp.c_proj.weight"].t())
            block.mlp.proj.bias.copy_(sd[p + "mlp.c_proj.bias"])


def hf_gpt2_state_dict(model: MiniGPT) -> dict[str, torch.Tensor]:
    """The inverse of ``load_hf_gpt2``: a GPT-2-configured MiniGPT's weights as a ``GPT2LMHeadModel`` state dict."""
    cfg = model.cfg
    if (cfg.positions, cfg.norm, cfg.mlp, cfg.bias) != ("learned", "layernorm", "gelu", True) or \
            (cfg.n_kv_head or cfg.n_head) != cfg.n_head:
        raise ValueError("hf_gpt2_state_dict needs a GPT-2 config: learned positions, layernorm, gelu, biases, no GQA")
    sd = {"transformer.wte.weight": model.wte.weight, "transformer.wpe.weight": model.wpe.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias,
          "lm_head.weight": model.lm_head.weight}
    for i, block in enumerate(model.blocks):
        p, attn = f"transformer.h.{i}.", block.attn
        sd.update({
            p + "ln_1.weight": block.ln_1.weight, p + "ln_1.bias": block.ln_1.bias,
            p + "ln_2.weight": block.ln_2.weight, p + "ln_2.bias": block.ln_2.bias,
            p + "attn.c_attn.weight": torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).t(),
            p + "attn.c_attn.bias": torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
            p + "attn.c_proj.weight": attn.out_proj.weight.t(), p + "attn.c_proj.bias": attn.out_proj.bias,
            p + "mlp.c_fc.weight": block.mlp.fc.weight.t(), p + "mlp.c_fc.bias": block.mlp.fc.bias,
            p + "mlp.c_proj.weight": block.mlp.proj.weight.t(), p + "mlp.c_proj.bias": block.mlp.proj.bias,
        })
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def to_hf_gpt2(model: MiniGPT):
    """A ``transformers.GPT2LMHeadModel`` with exactly this MiniGPT's weights (eval mode): the baseline for serving."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = model.cfg
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_layer=cfg.n_layer,
                                    n_head=cfg.n_head, n_embd=cfg.n_embd, layer_norm_epsilon=cfg.norm_eps,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    bos_token_id=None, eos_token_id=None))  # no end token: generation never stops early
    hf.load_state_dict(hf_gpt2_state_dict(model))
    return hf.eval()


def pretrained_gpt2(allow_download: bool = False) -> MiniGPT:
    """The real 124M GPT-2 (Radford et al., 2019) in a MiniGPT, from the Hugging Face hub or its local cache.

    Optional: nothing in the book needs it. Offline and without a cached copy it raises a clear
    error instead of hanging on the network; pass ``allow_download=True`` to fetch the weights.
    """
    from transformers import GPT2LMHeadModel

    try:
        hf = GPT2LMHeadModel.from_pretrained("gpt2", local_files_only=not allow_download)
    except OSError as err:
        raise RuntimeError("GPT-2 124M weights are not in the local Hugging Face cache; call "
                           "pretrained_gpt2(allow_download=True) with network access to fetch them "
                           f"(about 500 MB). Original error: {err}") from None
    c = hf.config
    model = MiniGPT(GPTConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer,
                              n_head=c.n_head, n_embd=c.n_embd, norm_eps=c.layer_norm_epsilon))
    load_hf_gpt2(model, hf.state_dict())
    return model.eval()
