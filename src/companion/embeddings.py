"""Embeddings: dense vectors learned so that similar things land close together.

An embedding table is a (V, d) matrix: row i is object i's vector, and a one-hot vector times the
table picks that row. What makes the rows useful is the training objective. This module holds the
three classic regimes side by side, plus the geometry used to read their results:

1. **word2vec, skip-gram with negative sampling** (Mikolov et al., 2013): predict the words around
   a word; each (center, context) pair is a positive for a logistic loss, and K words drawn from the
   unigram distribution raised to 0.75 are negatives. Frequent words are subsampled.
2. **Matrix factorization by alternating least squares** (Hu, Koren & Volinsky, 2008; Koren et al.,
   2009): R ≈ U Vᵀ over the observed entries; with V fixed every row of U is a ridge regression,
   solved exactly, and vice versa. Implicit feedback weights every cell by a confidence.
3. **A two-tower model with in-batch negatives** (Covington et al., 2016; Yi et al., 2019): a user
   tower and an item tower map ids and features to unit vectors; in a batch of B pairs each user's
   own item is the positive and the other B − 1 items are negatives of a softmax (InfoNCE, van den
   Oord et al., 2018), optionally corrected by the log of each item's sampling probability.

Geometry: cosine, dot and L2 scores; PCA by SVD; a UMAP projection for maps; and the relative
contrast (max − min) / min of distances, which shrinks as the dimension grows (Beyer et al., 1999).

    >>> wv = train_word2vec(tokenize("the list is a mutable sequence ..."), dim=32)
    >>> wv.neighbours("list", k=5)        # [(word, cosine), ...]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Similarity and geometry
# ---------------------------------------------------------------------------------------------


def _as_2d(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a vector (d,) or a matrix (n, d) with d >= 1, got shape {np.shape(x)}")
    return a


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has dimension {a.shape[1]} but b has dimension {b.shape[1]}; they must match")
    return a, b


def normalize(x) -> np.ndarray:
    """Rows scaled to unit L2 norm: (n, d) -> (n, d). A zero row has no direction, so it is an error."""
    a = _as_2d(x, "x")
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"x row {int(np.argmin(norms[:, 0]))} is the zero vector, which has no direction")
    return a / norms


def dot_similarity(a, b) -> np.ndarray:
    """Inner products a bᵀ: (n, d), (m, d) -> (n, m). Grows with the vectors' norms."""
    a, b = _pair(a, b)
    return a @ b.T


def cosine_similarity(a, b) -> np.ndarray:
    """cos(a_i, b_j) = a_i·b_j / (|a_i| |b_j|): (n, d), (m, d) -> (n, m), in [-1, 1]."""
    a, b = _pair(a, b)
    return np.clip(normalize(a) @ normalize(b).T, -1.0, 1.0)


def l2_distance(a, b) -> np.ndarray:
    """Euclidean distances |a_i - b_j|: (n, d), (m, d) -> (n, m), via |a|² + |b|² - 2 a·b."""
    a, b = _pair(a, b)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


METRICS = ("cosine", "dot", "l2")


def rank(query, items, metric: str = "cosine", k: int | None = None) -> np.ndarray:
    """Indices of ``items`` (m, d), best first, for one ``query`` (d,): highest score, or smallest L2."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    q = np.asarray(query, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"query must be one vector (d,), got shape {q.shape}")
    scores = {"cosine": cosine_similarity, "dot": dot_similarity}.get(metric)
    key = -scores(q, items)[0] if scores else l2_distance(q, items)[0]
    order = np.argsort(key, kind="stable")
    return order if k is None else order[:k]


def pca(x, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal components by SVD of the centred data.

    x (n, d) -> (projected (n, k), components (k, d), explained_variance_ratio (k,)). Each
    component's sign is fixed so its largest-magnitude entry is positive (PCA is unique up to sign).
    """
    a = _as_2d(x, "x")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(a.shape):
        raise ValueError(f"k must be an int in [1, min(n, d)] = [1, {min(a.shape)}], got {k!r}")
    centred = a - a.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:k]
    comps = comps * np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])[:, None]
    var = s**2
    return centred @ comps.T, comps, var[:k] / var.sum()


def umap_2d(x, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine", n_epochs: int | None = None,
            seed: int = 0) -> np.ndarray:
    """A seeded UMAP projection (McInnes et al., 2018) of x (n, d) -> (n, 2), for maps of embeddings.

    UMAP keeps each point's neighbourhood, not global distances: clusters mean something, the
    gaps between them much less. ``n_epochs`` small (e.g. 50) is enough for a quick look.
    """
    a = _as_2d(x, "x")
    if not 2 <= n_neighbors < len(a):
        raise ValueError(f"n_neighbors must be in [2, n) = [2, {len(a)}), got {n_neighbors}")
    import umap  # imported here: it loads numba, which takes seconds

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                        n_epochs=n_epochs, random_state=seed, init="spectral", n_jobs=1)
    return reducer.fit_transform(a.astype(np.float32))


def relative_contrast(points, queries) -> np.ndarray:
    """(max − min) / min of the L2 distances from each query to the points: (q,) values.

    Beyer et al. (1999) show this goes to 0 as the dimension grows for i.i.d. coordinates: the
    nearest point is barely nearer than the farthest, and "nearest neighbour" loses contrast.
    """
    d = l2_distance(queries, points)
    dmin = d.min(1)
    if (dmin == 0).any():
        raise ValueError("a query coincides with a point (distance 0); leave queries out of points")
    return (d.max(1) - dmin) / dmin


def gaussian_contrast(dims, n_points: int = 1000, n_queries: int = 20, seed: int = 0) -> np.ndarray:
    """Mean relative contrast of N(0, I_d) data for each d in ``dims``: (len(dims),)."""
    rng = np.random.default_rng(seed)
    out = []
    for d in dims:
        if int(d) < 1:
            raise ValueError(f"dims must be >= 1, got {d}")
        pts = rng.standard_normal((n_points + n_queries, int(d)))
        out.append(relative_contrast(pts[n_queries:], pts[:n_queries]).mean())
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# word2vec: skip-gram with negative sampling
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased words: 'A list, or dict_items.__len__' -> ['a', 'list', 'or', 'dict_items', 'len']."""
    return _WORD.findall(text.lower())


@dataclass
class Vocab:
    """Words sorted by count (most frequent first) with their counts; ``index`` maps word -> id."""

    words: list[str]
    counts: np.ndarray  # (V,) int64
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Token ids (n,) int64; words outside the vocabulary are dropped."""
        return np.array([self.index[t] for t in tokens if t in self.index], dtype=np.int64)


def build_vocab(tokens: list[str], min_count: int = 5) -> Vocab:
    """Every word seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    counts = Counter(tokens)
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if not kept:
        raise ValueError(f"no word occurs min_count={min_count} times in {len(tokens)} tokens")
    return Vocab(kept, np.array([counts[w] for w in kept], dtype=np.int64))


def keep_probability(freqs, t: float = 1e-4, formula: str = "code") -> np.ndarray:
    """Probability of keeping each occurrence of a word with relative frequency f, in [0, 1].

    ``"paper"`` (Mikolov et al., 2013b, eq. 5): discard with 1 − √(t/f), so keep = min(1, √(t/f)).
    ``"code"`` (the released word2vec.c, and gensim): keep = min(1, √(t/f) + t/f).
    Words rarer than about t are always kept; 'the' is mostly dropped.
    """
    f = np.asarray(freqs, dtype=np.float64)
    if (f <= 0).any() or (f > 1).any():
        raise ValueError("freqs must be relative frequencies in (0, 1]")
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    if formula == "paper":
        keep = np.sqrt(t / f)
    elif formula == "code":
        keep = np.sqrt(t / f) + t / f
    else:
        raise ValueError(f"formula must be 'paper' or 'code', got {formula!r}")
    return np.minimum(keep, 1.0)


def noise_distribution(counts, power: float = 0.75) -> np.ndarray:
    """Negative-sampling distribution P_n(w) ∝ count(w)^power: (V,) summing to 1."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or (c <= 0).any():
        raise ValueError("counts must be a 1-D array of positive counts")
    p = c**power
    return p / p.sum()


def negative_table(counts, power: float = 0.75, size: int = 1_000_000) -> np.ndarray:
    """word2vec.c's unigram table: (size,) word ids, word w filling ≈ size · P_n(w) slots.

    Drawing a uniform slot is then an O(1) draw from P_n.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    p = noise_distribution(counts, power)
    ends = np.round(np.cumsum(p) * size).astype(np.int64)  # slot where each word's run ends
    return np.repeat(np.arange(len(p)), np.diff(ends, prepend=0))


def subsample(ids: np.ndarray, counts, t: float, rng: np.random.Generator, formula: str = "code") -> np.ndarray:
    """Drop occurrences of frequent words at random, keeping each with ``keep_probability``."""
    c = np.asarray(counts, dtype=np.float64)
    keep = keep_probability(c / c.sum(), t, formula)
    return ids[rng.random(len(ids)) < keep[ids]]


def skipgram_pairs(ids: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """(center, context) pairs (P, 2) with word2vec's shrunken windows.

    Each position draws its own window b uniform in 1..window and pairs with the words up to b
    positions away on both sides — so near neighbours are used more often than far ones.
    ``[7, 8, 9]`` with window 1 -> [[7, 8], [8, 7], [8, 9], [9, 8]] (in some order).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    ids = np.asarray(ids)
    b = rng.integers(1, window + 1, size=len(ids))
    pairs = []
    for o in range(1, window + 1):
        i = np.nonzero(b[: len(ids) - o] >= o)[0]  # center i, context i + o
        pairs.append(np.stack([ids[i], ids[i + o]], 1))
        j = np.nonzero(b[o:] >= o)[0] + o  # center j, context j - o
        pairs.append(np.stack([ids[j], ids[j - o]], 1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


def sgns_loss(center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Skip-gram negative-sampling loss, mean over the batch.

    center (B, d) input vectors u, context (B, d) output vectors v, negatives (B, K, d):
    −log σ(u·v) − Σ_k log σ(−u·n_k). At u = 0 every term is log 2, so the loss is (K + 1) log 2.
    """
    pos = (center * context).sum(-1)  # (B,)
    neg = torch.einsum("bd,bkd->bk", center, negatives)  # (B, K)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def sgns_grad(center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The hand-derived gradients of ``sgns_loss`` (summed, not averaged, over the batch).

    With s⁺ = u·v and s_k = u·n_k: ∂/∂u = (σ(s⁺) − 1) v + Σ_k σ(s_k) n_k,
    ∂/∂v = (σ(s⁺) − 1) u, ∂/∂n_k = σ(s_k) u. Returns (B, d), (B, d), (B, K, d).
    """
    g_pos = torch.sigmoid((center * context).sum(-1)) - 1  # (B,)
    g_neg = torch.sigmoid(torch.einsum("bd,bkd->bk", center, negatives))  # (B, K)
    d_center = g_pos[:, None] * context + torch.einsum("bk,bkd->bd", g_neg, negatives)
    return d_center, g_pos[:, None] * center, g_neg[..., None] * center[:, None]


class SkipGram(nn.Module):
    """Two tables, as in word2vec.c: input vectors (the embeddings we keep) and output vectors.

    Inputs start uniform in ±0.5/d, outputs at zero, so the first loss is exactly (K + 1) log 2.
    """

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.inp = nn.Embedding(vocab_size, dim)
        self.out = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.inp.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.out.weight)

    def forward(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """center, context (B,) and negatives (B, K) word ids -> the mean SGNS loss."""
        return sgns_loss(self.inp(center), self.out(context), self.out(negatives))


@dataclass
class WordVectors:
    """Trained word vectors with the lookups used to read them."""

    vocab: Vocab
    vectors: np.ndarray  # (V, d) float32
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    pairs_per_epoch: int = 0

    def __getitem__(self, word: str) -> np.ndarray:
        if word not in self.vocab.index:
            raise KeyError(f"{word!r} is not in the vocabulary of {len(self.vocab)} words")
        return self.vectors[self.vocab.index[word]]

    def neighbours(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The k words with the highest cosine to ``word`` (itself excluded)."""
        sims = cosine_similarity(self[word], self.vectors)[0]
        sims[self.vocab.index[word]] = -np.inf
        top = np.argsort(-sims)[:k]
        return [(self.vocab.words[i], float(sims[i])) for i in top]

    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """3CosAdd: a is to b as c is to ?  argmax cos(x, b − a + c) over x ∉ {a, b, c}."""
        unit = normalize(self.vectors)
        target = unit[self.vocab.index[b]] - unit[self.vocab.index[a]] + unit[self.vocab.index[c]]
        sims = unit @ target / np.linalg.norm(target)
        for w in (a, b, c):
            sims[self.vocab.index[w]] = -np.inf
        top = np.argsort(-sims)[:k]
        return [(self.vocab.words[i], float(sims[i])) for i in top]


def train_word2vec(tokens: list[str], dim: int = 64, window: int = 5, negatives: int = 5, min_count: int = 5,
                   epochs: int = 5, batch_size: int = 1024, lr: float = 0.01, t: float = 1e-4, seed: int = 0,
                   progress: bool = False) -> WordVectors:
    """Skip-gram with negative sampling on a token list, with Adam on vectorized batches.

    Every epoch re-draws the subsample and the windows, as word2vec.c does per pass.
    """
    for name, v in (("dim", dim), ("negatives", negatives), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    vocab = build_vocab(tokens, min_count)
    ids = vocab.encode(tokens)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    table = torch.from_numpy(negative_table(vocab.counts, size=max(100_000, 100 * len(vocab))))
    model = SkipGram(len(vocab), dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, n_pairs = [], 0
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="word2vec epochs")
    for _ in epoch_iter:
        pairs = torch.from_numpy(skipgram_pairs(subsample(ids, vocab.counts, t, rng), window, rng))
        pairs = pairs[torch.from_numpy(rng.permutation(len(pairs)))]
        n_pairs = len(pairs)
        total = 0.0
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start:start + batch_size]
            neg = table[torch.randint(len(table), (len(batch), negatives))]  # (B, K)
            loss = model(batch[:, 0], batch[:, 1], neg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        losses.append(total / max(1, len(pairs)))
    return WordVectors(vocab, model.inp.weight.detach().numpy().copy(), losses, n_pairs)


# ---------------------------------------------------------------------------------------------
# Matrix factorization by alternating least squares
# ---------------------------------------------------------------------------------------------


@dataclass
class Ratings:
    """A synthetic user-item world: R = U Vᵀ + noise, observed where ``mask`` is True."""

    U: np.ndarray  # (n_users, rank) true user factors
    V: np.ndarray  # (n_items, rank) true item factors
    R: np.ndarray  # (n_users, n_items) noisy ratings (every cell; only masked ones are "seen")
    mask: np.ndarray  # (n_users, n_items) bool, the observed cells


def synthetic_ratings(n_users: int = 300, n_items: int = 200, rank: int = 5, density: float = 0.2,
                      noise: float = 0.1, seed: int = 0) -> Ratings:
    """Ratings from planted factors with N(0, 1/√rank) entries, so a clean rating has variance 1."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_users, rank)) / rank**0.25
    V = rng.standard_normal((n_items, rank)) / rank**0.25
    R = U @ V.T + noise * rng.standard_normal((n_users, n_items))
    return Ratings(U, V, R, rng.random((n_users, n_items)) < density)


def ridge_rows(X: np.ndarray, Y: np.ndarray, W: np.ndarray, lam: float) -> np.ndarray:
    """For each row r: argmin_w Σ_j W[r,j] (Y[r,j] − X_j·w)² + lam |w|² — exactly, by the normal equations.

    X (m, k) the fixed factors, Y (n, m) targets, W (n, m) weights (0 = unobserved) -> (n, k).
    Solves (Xᵀ diag(W_r) X + lam I) w = Xᵀ diag(W_r) Y_r for all rows at once.
    """
    k = X.shape[1]
    A = np.einsum("nm,mi,mj->nij", W, X, X) + lam * np.eye(k)  # (n, k, k)
    b = (W * Y) @ X  # (n, k)
    return np.linalg.solve(A, b[..., None])[..., 0]


def als_loss(R: np.ndarray, W: np.ndarray, U: np.ndarray, V: np.ndarray, lam: float) -> float:
    """Σ W ⊙ (R − U Vᵀ)² + lam (|U|² + |V|²): the objective every half-step lowers."""
    return float((W * (R - U @ V.T) ** 2).sum() + lam * ((U**2).sum() + (V**2).sum()))


@dataclass
class ALSResult:
    U: np.ndarray  # (n_users, rank)
    V: np.ndarray  # (n_items, rank)
    losses: list[float]  # after init, then after every half-step


def als(R: np.ndarray, mask: np.ndarray, rank: int, lam: float = 0.1, iters: int = 10, seed: int = 0,
        alpha: float | None = None) -> ALSResult:
    """Alternating least squares for R ≈ U Vᵀ.

    Explicit (``alpha=None``): weights are the mask, targets the ratings. Implicit (Hu et al., 2008):
    every cell counts, the target is the preference p = [R > 0 and observed] and the weight is the
    confidence 1 + alpha·R on observed cells, 1 elsewhere.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an int >= 1, got {rank!r}")
    if R.shape != mask.shape:
        raise ValueError(f"R has shape {R.shape} but mask has shape {mask.shape}; they must match")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if alpha is None:
        W, Y = mask.astype(np.float64), np.where(mask, R, 0.0)
    else:
        seen = mask & (R > 0)
        W, Y = np.where(seen, 1 + alpha * R, 1.0), seen.astype(np.float64)
    rng = np.random.default_rng(seed)
    U = 0.1 * rng.standard_normal((R.shape[0], rank))
    V = 0.1 * rng.standard_normal((R.shape[1], rank))
    losses = [als_loss(Y, W, U, V, lam)]
    for _ in range(iters):
        U = ridge_rows(V, Y, W, lam)
        losses.append(als_loss(Y, W, U, V, lam))
        V = ridge_rows(U, Y.T, W.T, lam)
        losses.append(als_loss(Y, W, U, V, lam))
    return ALSResult(U, V, losses)


def principal_angles(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of A (n, p) and B (n, q)."""
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A has {A.shape[0]} rows but B has {B.shape[0]}; they must match")
    qa, qb = np.linalg.qr(A)[0], np.linalg.qr(B)[0]
    s = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.sort(np.arccos(np.clip(s, -1.0, 1.0)))


# ---------------------------------------------------------------------------------------------
# Two towers with in-batch negatives
# ---------------------------------------------------------------------------------------------


def in_batch_softmax_loss(user: torch.Tensor, item: torch.Tensor, temperature: float = 0.1,
                          log_q: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch InfoNCE: row i's positive is item i, the batch's other items its negatives.

    user, item (B, d) -> scalar. logits = user itemᵀ / temperature (B, B); with ``log_q`` (B,), the
    log-probability that each item appears in a batch, column j is lowered by log_q[j] (Yi et al.,
    2019), so popular items are not penalized just for being frequent negatives.
    """
    if user.shape != item.shape or user.ndim != 2:
        raise ValueError(f"user and item must both be (B, d), got {tuple(user.shape)} and {tuple(item.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = user @ item.T / temperature  # (B, B)
    if log_q is not None:
        logits = logits - log_q[None, :]
    return (torch.logsumexp(logits, 1) - logits.diagonal()).mean()


class Tower(nn.Module):
    """id embedding ⊕ features -> MLP -> unit vector. ids (B,), feats (B, f) -> (B, out_dim)."""

    def __init__(self, n_ids: int, n_feats: int, id_dim: int = 32, hidden: int = 64, out_dim: int = 32):
        super().__init__()
        self.emb = nn.Embedding(n_ids, id_dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.mlp = nn.Sequential(nn.Linear(id_dim + n_feats, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(torch.cat([self.emb(ids), feats], -1)), dim=-1)


@dataclass
class Interactions:
    """Users and items with planted tastes; ``train``/``test`` are (n, 2) [user, item] pairs."""

    user_feats: np.ndarray  # (n_users, f) noisy view of the user's taste
    item_feats: np.ndarray  # (n_items, f) noisy view of the item's content
    popularity: np.ndarray  # (n_items,) the prior share of each item
    train: np.ndarray
    test: np.ndarray
    logits: np.ndarray  # (n_users, n_items) the true click logits: the ceiling any model can reach


def synthetic_interactions(n_users: int = 1000, n_items: int = 500, dim: int = 8, per_user: int = 10,
                           feat_noise: float = 0.5, zipf: float = 1.0, sharpness: float = 8.0,
                           seed: int = 0) -> Interactions:
    """Each user clicks ``per_user`` items drawn from softmax(sharpness · u·v + log popularity).

    Tastes u, v are unit vectors in ``dim`` dims; popularity is Zipf(``zipf``) over a random order
    of items. Features are the taste plus N(0, feat_noise²) noise. The last click of every user is
    held out as ``test``.
    """
    if per_user < 2:
        raise ValueError(f"per_user must be >= 2 (one click is held out), got {per_user}")
    rng = np.random.default_rng(seed)
    u = normalize(rng.standard_normal((n_users, dim)))
    v = normalize(rng.standard_normal((n_items, dim)))
    pop = 1.0 / (1 + rng.permutation(n_items)) ** zipf
    pop /= pop.sum()
    logits = sharpness * u @ v.T + np.log(pop)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    cum = p.cumsum(1)
    clicks = np.minimum((cum[:, None, :] < rng.random((n_users, per_user, 1))).sum(-1), n_items - 1)
    users = np.repeat(np.arange(n_users), per_user).reshape(n_users, per_user)
    pairs = np.stack([users, clicks], -1)  # (n_users, per_user, 2)
    feats = lambda x: (x + feat_noise * rng.standard_normal(x.shape)).astype(np.float32)  # noqa: E731
    return Interactions(feats(u), feats(v), pop, pairs[:, :-1].reshape(-1, 2), pairs[:, -1], logits)


class TwoTower(nn.Module):
    """A user tower and an item tower whose dot product (a cosine: both are unit) scores a pair."""

    def __init__(self, n_users: int, n_items: int, n_feats: int, id_dim: int = 32, hidden: int = 64,
                 out_dim: int = 32):
        super().__init__()
        self.user = Tower(n_users, n_feats, id_dim, hidden, out_dim)
        self.item = Tower(n_items, n_feats, id_dim, hidden, out_dim)


def recall_at_k(user_vecs: np.ndarray, item_vecs: np.ndarray, test: np.ndarray, k: int = 10,
                exclude: np.ndarray | None = None) -> float:
    """Share of held-out (user, item) pairs whose item is among the user's top k by dot product.

    ``exclude`` (n, 2) pairs — the user's training clicks — are removed from the ranking first.
    """
    users, items = test[:, 0], test[:, 1]
    scores = user_vecs[users] @ item_vecs.T  # (n_test, n_items)
    if exclude is not None:
        row = {u: i for i, u in enumerate(users)}
        sel = np.array([row.get(u, -1) for u in exclude[:, 0]])
        ok = sel >= 0
        hit_own = exclude[ok, 1] == items[sel[ok]]  # never remove the held-out item itself
        scores[sel[ok][~hit_own], exclude[ok, 1][~hit_own]] = -np.inf
    target = scores[np.arange(len(items)), items]
    return float(((scores > target[:, None]).sum(1) < k).mean())


@dataclass
class TwoTowerResult:
    model: TwoTower
    recall: list[float]  # held-out recall@k after each epoch (index 0: before training)
    losses: list[float]  # mean in-batch loss per epoch


def tower_vectors(model: TwoTower, data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """All users' and all items' vectors: (n_users, d), (n_items, d)."""
    with torch.no_grad():
        uf, vf = torch.from_numpy(data.user_feats), torch.from_numpy(data.item_feats)
        users = model.user(torch.arange(len(uf)), uf).numpy()
        items = model.item(torch.arange(len(vf)), vf).numpy()
    return users, items


def train_two_tower(data: Interactions, epochs: int = 10, batch_size: int = 256, temperature: float = 0.1,
                    lr: float = 3e-3, log_q: bool = False, k: int = 10, out_dim: int = 32, seed: int = 0,
                    progress: bool = False) -> TwoTowerResult:
    """Train a TwoTower with in-batch softmax; track held-out recall@k every epoch."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2 (in-batch negatives need a batch), got {batch_size!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_users, n_items = len(data.user_feats), len(data.item_feats)
    model = TwoTower(n_users, n_items, data.user_feats.shape[1], out_dim=out_dim)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train = torch.from_numpy(data.train)
    uf, vf = torch.from_numpy(data.user_feats), torch.from_numpy(data.item_feats)
    # log Q(item in batch) ≈ log(batch_size · its share of training clicks), as estimated from the log
    share = torch.bincount(train[:, 1], minlength=n_items).double().clamp(min=1) / len(train)
    logq_all = torch.log(batch_size * share).float()

    def recall() -> float:
        return recall_at_k(*tower_vectors(model, data), data.test, k, exclude=data.train)

    history, losses = [recall()], []
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="two-tower epochs")
    for _ in epoch_iter:
        total = 0.0
        perm = torch.randperm(len(train), generator=gen)
        for start in range(0, len(train) - batch_size + 1, batch_size):
            users, items = train[perm[start:start + batch_size]].T
            loss = in_batch_softmax_loss(model.user(users, uf[users]), model.item(items, vf[items]), temperature,
                                         logq_all[items] if log_q else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / max(1, len(train) // batch_size))
        history.append(recall())
    return TwoTowerResult(model, history, losses)


__all__ = [
    "ALSResult", "Interactions", "METRICS", "Ratings", "SkipGram", "Tower", "TwoTower", "TwoTowerResult", "Vocab",
    "WordVectors", "als", "als_loss", "build_vocab", "cosine_similarity", "dot_similarity", "gaussian_contrast",
    "in_batch_softmax_loss", "keep_probability", "l2_distance", "negative_table", "noise_distribution", "normalize",
    "pca", "principal_angles", "rank", "recall_at_k", "relative_contrast", "ridge_rows", "sgns_grad", "sgns_loss",
    "skipgram_pairs", "subsample", "synthetic_interactions", "synthetic_ratings", "tokenize", "tower_vectors",
    "train_two_tower", "train_word2vec", "umap_2d",
]
