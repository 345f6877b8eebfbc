# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Embeddings
#
# Search, recommendations and retrieval-augmented generation all start the same way: every word,
# user, item and document becomes a vector, and "related" becomes "close". The vectors are learned,
# and how they are learned decides what "close" means — words that share contexts, users who like
# the same items, a query and the document that answers it. The choices around them are production
# decisions with a cost: the dimension sets the memory of every index, the similarity function has
# to match the training loss, unnormalized vectors let popularity or length swamp relevance, and a
# sampling bias in training shows up as a recall gap in serving. Interviews probe exactly these
# points: "how is word2vec trained", "why in-batch negatives, and what goes wrong with them",
# "cosine or dot product", "why does nearest-neighbour search get hard in high dimensions". This
# chapter trains each classic kind of embedding on data whose answer we know, and measures the
# geometry of real sentence embeddings.
#
# **You will learn**
# - what an embedding table is — a one-hot vector times a matrix — and why dense beats one-hot;
# - word2vec's skip-gram with negative sampling, piece by piece (subsampling, the unigram^0.75
#   noise table, shrunken windows), trained on the Python documentation, with its neighbours and
#   analogies read honestly;
# - matrix factorization by alternating least squares, each half-step an exact ridge regression,
#   recovering planted factors;
# - a two-tower retrieval model trained with in-batch softmax negatives, and what the logQ
#   correction for popular items buys;
# - sentence embeddings (all-MiniLM-L6-v2) of real documentation: nearest neighbours and an
#   interactive map;
# - cosine, dot product and L2, when they disagree and why normalization matters;
# - distance concentration in high dimensions, measured on Gaussian data and on real embeddings.
#
# [Open in Colab](https://colab.research.google.com/github/ml-systems-book/ml-systems-notebook/blob/main/notebooks/30_embeddings.ipynb)
# · Runtime budget on 2 CPU cores: under 60 s with `SMOKE=True` once the documentation's sentence
# embeddings are cached (the first encoding of 300 paragraphs adds 15–25 s), under 5 minutes in
# full mode.

# %% tags=["hide-input"]
# Setup: on Colab, install the companion package from the book's repository; locally a no-op.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("companion") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "companion @ git+https://github.com/ml-systems-book/ml-systems-notebook"])

# %% tags=["parameters"]
from companion.config import smoke_default

SMOKE = smoke_default()  # True: small corpora and few epochs (≤ 60 s on 2 cores); False: the full chapter

# %%
import inspect
import math
import time
from collections import Counter

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from IPython.display import Code, Markdown
from plotly.subplots import make_subplots
from sklearn.cluster import KMeans
from sklearn.manifold import trustworthiness
from tqdm.auto import tqdm

from companion import embeddings as E
from companion import sentence, viz
from companion.book import check, glue
from companion.config import pick, seed_everything
from companion.data.corpora import python_docs, python_docs_paragraphs

seed_everything(0)
torch.set_num_threads(1)  # the models here are small: one core is faster than two, and timings are steadier
C = viz.PALETTE


def short(text: str, n: int = 100) -> str:
    """The first n characters of a paragraph, for tables and hover labels."""
    return text[:n].replace("|", "\\|") + ("…" if len(text) > n else "")

# %% [markdown]
# ## 1. From one-hot to dense
#
# A vocabulary of $V$ words can be written as one-hot vectors: word $i$ is the $i$-th unit vector
# $e_i \in \mathbb{R}^V$. That code is exact and useless for similarity — every pair of distinct
# words is at the same distance $\sqrt 2$ and cosine 0, so "list" is as far from "tuple" as from
# "lambda". An **embedding** maps each word to a row of a matrix $W \in \mathbb{R}^{V \times d}$
# with $d \ll V$: $x_i = e_i^\top W$. Multiplying by a one-hot vector only picks a row, so in code an
# embedding layer is a table lookup (`nn.Embedding`), and its rows are parameters that a loss moves
# around until related things sit close together. The geometry is the point: directions and
# distances in $\mathbb{R}^d$ now carry meaning, and the nearest rows of the table are the most
# related objects.

# %%
V_demo, d_demo = 12, 4
table = torch.nn.Embedding(V_demo, d_demo)
ids = torch.tensor([3, 0, 7, 3])
one_hot = F.one_hot(ids, V_demo).float()  # (4, V)
torch.testing.assert_close(one_hot @ table.weight, table(ids))  # one-hot × matrix = row lookup
eye = np.eye(V_demo)
assert np.allclose(E.l2_distance(eye, eye)[~np.eye(V_demo, dtype=bool)], math.sqrt(2))
assert np.allclose(E.cosine_similarity(eye, eye)[~np.eye(V_demo, dtype=bool)], 0)
print("one-hot @ W equals nn.Embedding's lookup; every pair of one-hot vectors: distance √2, cosine 0")

# %% [markdown]
# The seed documents give typical widths: 32 for small recommenders, 128 for items, 384–768 for
# sentence embeddings, 1024–4096 for large retrieval models. The sentence model used later here,
# all-MiniLM-L6-v2, is {glue:text}`minilm_dim` wide. The training regimes below differ in what they
# call "related": words in the same window, users and items in the same rating matrix, a query and
# its clicked item.
#
# ## 2. word2vec: skip-gram with negative sampling
#
# Skip-gram {cite}`mikolov2013efficient` predicts the words around a word. Each position gives
# (center, context) pairs; a full softmax over the vocabulary per pair is too expensive, so
# **negative sampling** {cite}`mikolov2013distributed` turns each pair into a binary task: the true
# context against $K$ random "noise" words. With input vector $u$ of the center, output vector $v$
# of the context and $n_1, \dots, n_K$ of the negatives, the loss of one pair is
#
# $$\ell = -\log \sigma(u^\top v) - \sum_{k=1}^{K} \log \sigma(-u^\top n_k),$$
#
# with gradients $\partial\ell/\partial u = (\sigma(u^\top v) - 1)\,v + \sum_k \sigma(u^\top n_k)\,n_k$,
# $\partial\ell/\partial v = (\sigma(u^\top v) - 1)\,u$ and $\partial\ell/\partial n_k = \sigma(u^\top n_k)\,u$.
# `companion.embeddings` writes both (the unit tests check them against autograd and `gradcheck`):

# %%
Code(inspect.getsource(E.sgns_loss) + "\n\n" + inspect.getsource(E.sgns_grad), language="python")

# %% [markdown]
# Three sampling details make it work, and all three are tested in `tests/unit/test_embeddings.py`:
#
# - **Frequent-word subsampling.** "the" co-occurs with everything and teaches little, so each
#   occurrence of a word with relative frequency $f$ is dropped at random. The paper discards with
#   probability $1 - \sqrt{t/f}$ ($t \approx 10^{-5}$); the released `word2vec.c` (and gensim)
#   keeps with probability $\sqrt{t/f} + t/f$ ($t = 10^{-3}$ by default, $10^{-4}$ in many guides).
# - **The noise distribution** $P_n(w) \propto \text{count}(w)^{0.75}$: between the unigram
#   distribution (negatives are almost all stop words) and uniform (negatives are almost all rare
#   words). `word2vec.c` fills a large table with word ids in those proportions and draws a uniform
#   slot — an O(1) sample.
# - **Shrunken windows.** Each position draws its window $b$ uniformly in $1..\text{window}$, so a
#   neighbour at distance 1 is used every time and one at distance 5 a fifth of the time.
#
# The corpus is the prose of the Python documentation (`pydoc_data.topics`, shipped with Python),
# lower-cased and split into words, keeping words seen at least 5 times.

# %%
tokens = E.tokenize(python_docs())
type_counts = Counter(tokens)
hapax = [w for w, c in type_counts.items() if c == 1]
w2v_cfg = dict(dim=pick(SMOKE, 32, 64), window=5, negatives=5, min_count=5, epochs=pick(SMOKE, 3, 12),
               batch_size=1024, lr=0.01, t=1e-4, seed=0)
vocab = E.build_vocab(tokens, w2v_cfg["min_count"])
freqs = vocab.counts / vocab.counts.sum()
glue("minilm_dim", sentence.DIM)
glue("n_tokens", len(tokens))
glue("n_types", len(type_counts))
glue("n_vocab", len(vocab))
glue("hapax_type_share", len(hapax) / len(type_counts))
glue("hapax_token_share", len(hapax) / len(tokens))
glue("vocab_token_share", vocab.counts.sum() / len(tokens))
print(f"{len(tokens):,} tokens, {len(type_counts):,} distinct words, {len(vocab):,} seen ≥ 5 times "
      f"(covering {vocab.counts.sum() / len(tokens):.0%} of tokens); hapaxes: {len(hapax) / len(type_counts):.0%} "
      f"of types, {len(hapax) / len(tokens):.1%} of tokens")

# subsampling: the two published formulas on this corpus's word frequencies
keep_rules = {"paper, t = 1e-5": ("paper", 1e-5), "word2vec.c, t = 1e-4": ("code", 1e-4),
              "word2vec.c, t = 1e-3 (its default)": ("code", 1e-3)}
kept_share = {name: float((E.keep_probability(freqs, t, f) * vocab.counts).sum() / vocab.counts.sum())
              for name, (f, t) in keep_rules.items()}
the_keep = {name: float(E.keep_probability(freqs[vocab.index["the"]], t, f)) for name, (f, t) in keep_rules.items()}
noise = E.noise_distribution(vocab.counts)
# the chance that a negative equals the true context word, averaged over the context distribution
p_collide = float((freqs * noise).sum())
glue("kept_paper", kept_share["paper, t = 1e-5"])
glue("kept_code4", kept_share["word2vec.c, t = 1e-4"])
glue("kept_code3", kept_share["word2vec.c, t = 1e-3 (its default)"])
glue("the_keep_paper", the_keep["paper, t = 1e-5"])
glue("the_keep_code4", the_keep["word2vec.c, t = 1e-4"])
glue("p_collide", p_collide)
glue("inv_vocab", 1 / len(vocab))
glue("collide_ratio", p_collide * len(vocab))
glue("the_unigram", float(freqs[0]))
glue("the_noise", float(noise[0]))

f_grid = np.geomspace(freqs.min(), freqs.max(), 200)
fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("keep probability of a word's occurrences", "share of negatives per word"))
for color, (name, (f, t)) in zip(C, keep_rules.items()):
    fig.add_scatter(x=f_grid, y=E.keep_probability(f_grid, t, f), mode="lines", name=name, line=dict(color=color),
                    row=1, col=1)
fig.add_scatter(x=freqs, y=E.keep_probability(freqs, 1e-4, "code"), mode="markers", text=vocab.words,
                marker=dict(size=4, color=C[1]), name="this vocabulary (t = 1e-4)", row=1, col=1,
                hovertemplate="%{text}: f = %{x:.1e}, keep %{y:.2f}<extra></extra>")
rank_ = np.arange(1, len(vocab) + 1)
for color, (name, p) in zip((C[3], C[4], "gray"), (("unigram", freqs), ("unigram^0.75 (word2vec)", noise),
                                                  ("uniform", np.full(len(vocab), 1 / len(vocab))))):
    fig.add_scatter(x=rank_, y=p, mode="lines", name=name, line=dict(color=color), row=1, col=2)
fig.update_xaxes(type="log", title_text="relative frequency f", row=1, col=1)
fig.update_xaxes(type="log", title_text="word rank", row=1, col=2)
fig.update_yaxes(type="log", title_text="probability", row=1, col=2)
fig.update_layout(height=430, title="word2vec's two sampling distributions on the documentation's vocabulary",
                  legend=dict(orientation="h", y=-0.25))
fig.show()
assert kept_share["paper, t = 1e-5"] < kept_share["word2vec.c, t = 1e-4"] < kept_share["word2vec.c, t = 1e-3 (its default)"]
assert freqs[0] > noise[0] > 1 / len(vocab), "0.75 flattens the unigram: 'the' is drawn less often, but not uniformly"
assert p_collide > 1 / len(vocab)

# %% [markdown]
# The corpus is small: {glue:text}`n_tokens:,` tokens and {glue:text}`n_types:,` distinct words, of
# which {glue:text}`n_vocab:,` occur at least five times (they cover
# {glue:text}`vocab_token_share:.0%` of the tokens). Words seen once — hapaxes — are
# {glue:text}`hapax_type_share:.0%` of the distinct words but only {glue:text}`hapax_token_share:.1%`
# of the tokens, the long tail a `min_count` removes cheaply.
#
# The two subsampling rules in circulation are not the same rule. On this vocabulary the paper's
# formula with $t = 10^{-5}$ keeps {glue:text}`kept_paper:.0%` of the tokens; `word2vec.c`'s with
# $t = 10^{-4}$ keeps {glue:text}`kept_code4:.0%`, and with its default $t = 10^{-3}$
# {glue:text}`kept_code3:.0%`. For "the" the keep probability is {glue:text}`the_keep_paper:.3f`
# against {glue:text}`the_keep_code4:.3f`. Neither is wrong; they are different amounts of
# subsampling, and $t$ has to be tuned to the corpus size (here $t = 10^{-4}$).
#
# In the right panel the 0.75 power lowers "the" from {glue:text}`the_unigram:.1%` of draws to
# {glue:text}`the_noise:.1%` and lifts the tail. One claim in the seed notes says the chance that a
# negative equals the positive is at most $1/|V|$. Measured: the probability that a draw from $P_n$
# equals a context word drawn from the corpus is {glue:text}`p_collide:.4f`,
# {glue:text}`collide_ratio:.1f`× $1/|V|$ — frequent words are frequent contexts *and* frequent
# negatives, so collisions are common. word2vec does not reject them; they are noise the loss absorbs.
#
# ### Training on the documentation
#
# Training uses Adam on batches of 1,024 (center, context) pairs, each with $K = 5$ negatives, the
# subsample and windows re-drawn every epoch. The output vectors start at zero, as in `word2vec.c`,
# so the first loss is exactly $(K+1)\log 2$.

# %%
model0 = E.SkipGram(len(vocab), w2v_cfg["dim"])
first_ids = torch.from_numpy(vocab.encode(tokens[:512]))
init_loss = model0(first_ids[:-1], first_ids[1:], torch.randint(len(vocab), (len(first_ids) - 1, 5))).item()
glue("init_loss", init_loss)
glue("init_loss_ratio", init_loss / math.log(2))
assert math.isclose(init_loss, 6 * math.log(2), rel_tol=1e-6)

start = time.perf_counter()
wv = E.train_word2vec(tokens, **w2v_cfg, progress=True)
w2v_s = time.perf_counter() - start
words_per_s = len(tokens) * w2v_cfg["epochs"] / w2v_s
glue("w2v_s", w2v_s)
glue("w2v_epochs", w2v_cfg["epochs"])
glue("w2v_dim", w2v_cfg["dim"])
glue("w2v_pairs", wv.pairs_per_epoch)
glue("words_per_s", words_per_s)
glue("hours_1e9", 1e9 / words_per_s / 3600)
glue("text8_3ep_hours", 3 * 17_005_207 / words_per_s / 3600)
glue("minutes_claim_ratio", 1e9 / words_per_s / 600)
glue("w2v_loss_first", wv.losses[0])
glue("w2v_loss_last", wv.losses[-1])
print(f"{w2v_cfg['epochs']} epochs in {w2v_s:.1f} s: {words_per_s:,.0f} corpus words/s on one core, "
      f"{wv.pairs_per_epoch:,} pairs per epoch; loss {wv.losses[0]:.3f} → {wv.losses[-1]:.3f}")
assert wv.losses[-1] < wv.losses[0] < init_loss

# %% [markdown]
# The loss starts at {glue:text}`init_loss:.3f` = {glue:text}`init_loss_ratio:.0f` log 2 — not
# "log 2" as one seed's walkthrough says: the positive and each of the five negatives contribute
# log 2 each — and falls to {glue:text}`w2v_loss_last:.2f` after {glue:text}`w2v_epochs` epochs of
# {glue:text}`w2v_pairs:,` pairs. Here are the nearest neighbours (cosine) of a few words:

# %%
probe = ["list", "dict", "tuple", "exception", "raise", "string", "lambda", "file"]
Markdown("| word | 8 nearest neighbours (cosine) |\n|---|---|\n" + "\n".join(
    f"| **{w}** | " + ", ".join(f"{n} ({s:.2f})" for n, s in wv.neighbours(w, 8)) + " |" for w in probe))

# %% [markdown]
# Analogies are read with **3CosAdd**: "$a$ is to $b$ as $c$ is to ?" is the word whose vector has
# the highest cosine with $b - a + c$, excluding the three query words. Famous examples ("king −
# man + woman") need billions of tokens; here is a set of documentation-flavoured analogies, scored
# as a hit if the expected word is in the top 5:

# %%
analogies = [("key", "keys", "value", "values"), ("list", "lists", "tuple", "tuples"),
             ("int", "integer", "float", "floating"), ("dict", "keys", "list", "items"),
             ("list", "mutable", "tuple", "immutable"), ("lt", "gt", "le", "ge"), ("add", "sub", "mul", "truediv"),
             ("import", "module", "def", "function"), ("class", "classes", "function", "functions"),
             ("str", "string", "int", "integer"), ("try", "except", "if", "else"), ("get", "getattr", "set", "setattr")]
rows, hits1, hits5 = [], 0, 0
for a, b, c, want in analogies:
    got = [w for w, _ in wv.analogy(a, b, c, 5)]
    hits1, hits5 = hits1 + (got[0] == want), hits5 + (want in got)
    rows.append(f"| {a} : {b} :: {c} : ? | {want} | {', '.join(f'**{w}**' if w == want else w for w in got)} |")
glue("analogy_n", len(analogies))
glue("analogy_top1", hits1 / len(analogies))
glue("analogy_top5", hits5 / len(analogies))
glue("analogy_chance", 5 / (len(vocab) - 3))
exception_words = {"handled", "handler", "handlers", "handle", "caught", "clause", "clauses", "except", "raised",
                   "traceback", "exceptions", "try", "finally", "raise", "error"}
assert exception_words & {w for w, _ in wv.neighbours("exception", 10)}, "exception's neighbours are about handling"
assert "tuple" in {w for w, _ in wv.neighbours("list", 10)}
assert hits5 >= 2, "a few analogies hold even on a 60k-token corpus"
Markdown("| analogy | expected | top 5 by 3CosAdd |\n|---|---|---|\n" + "\n".join(rows))

# %% [markdown]
# Read the table with the corpus size in mind. The neighbours are mostly sensible — "exception"
# sits next to words about raising and handling it, "list" has "tuple" among its neighbours — and
# {glue:text}`analogy_top5:.0%` of these {glue:text}`analogy_n` analogies land in the top 5
# ({glue:text}`analogy_top1:.0%` at rank 1), against {glue:text}`analogy_chance:.2%` by chance. That
# is far above chance and far below what the same code gets from a billion tokens: with ~60k tokens
# many words have seen only a few dozen contexts, so their vectors are noisy, and the analogies that
# work are the ones the documentation states over and over (`__lt__`/`__gt__`/`__le__`/`__ge__`).
#
# How long would a billion tokens take? This run processed {glue:text}`words_per_s:,.0f` corpus words
# per second on one core (Python batching, Adam, PyTorch on CPU). At that rate 10⁹ tokens take
# {glue:text}`hours_1e9:.1f` hours per epoch — {glue:text}`minutes_claim_ratio:.0f`× the ten
# minutes that "minutes on CPU for 10⁹ tokens" would allow — while three epochs of text8 (17M
# tokens) take {glue:text}`text8_3ep_hours:.1f` hours, in line with another seed's "about 30 minutes
# on CPU". The optimized C code (lock-free Hogwild SGD on many threads) is much faster per core
# than batched PyTorch, but a billion tokens in minutes would need millions of words per second.
#
# :::{admonition} Interview angle: "walk me through word2vec's training"
# :class: tip
# Skip-gram turns text into (center, context) pairs within a random window; negative sampling
# replaces the V-way softmax with K + 1 logistic regressions — the true context against K words
# from unigram^0.75 — so each pair costs O(K·d), not O(V·d). Frequent words are subsampled. Two
# tables are learned (input and output vectors); the input ones are kept. Mention that skip-gram with
# negative sampling implicitly factorizes a shifted pointwise-mutual-information matrix
# {cite}`levy2014neural`, which links it to the matrix factorization below, and that the same recipe —
# sampled negatives, a logistic or softmax loss, a dot product — reappears in item2vec, node2vec and
# two-tower retrieval.
# :::
#
# The map below projects a few groups of words onto the first two principal components of their
# vectors (PCA by SVD, checked against scikit-learn in the tests). Two dimensions keep little of a
# {glue:text}`w2v_dim`-dimensional space, so treat it as a sketch of the geometry:

# %%
groups = {"containers": ["list", "dict", "tuple", "set", "frozenset", "sequence", "mapping"],
          "numbers": ["int", "float", "complex", "integer", "decimal", "number"],
          "errors": ["exception", "error", "raise", "raised", "traceback", "typeerror", "valueerror"],
          "control flow": ["if", "else", "while", "for", "break", "continue", "loop"],
          "functions": ["def", "lambda", "function", "argument", "return", "call"]}
words = [w for ws in groups.values() for w in ws if w in vocab.index]
xy, _, var_ratio = E.pca(np.stack([wv[w] for w in words]), 2)
fig = go.Figure()
for color, (group, ws) in zip(C, groups.items()):
    sel = [i for i, w in enumerate(words) if w in ws]
    fig.add_scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers+text", text=[words[i] for i in sel], name=group,
                    textposition="top center", marker=dict(size=9, color=color))
fig.update_layout(height=480, title=f"word2vec vectors of five groups, PCA to 2-D ({var_ratio.sum():.0%} of their variance)",
                  xaxis_title="PC 1", yaxis_title="PC 2")
fig.show()
group_of = {w: g for g, ws in groups.items() for w in ws}
vecs = E.normalize(np.stack([wv[w] for w in words]))
sims = vecs @ vecs.T
same = np.array([[group_of[a] == group_of[b] and a != b for b in words] for a in words])
diff = np.array([[group_of[a] != group_of[b] for b in words] for a in words])
glue("group_cos_same", sims[same].mean())
glue("group_cos_diff", sims[diff].mean())
assert sims[same].mean() > sims[diff].mean(), "words of a group are closer to each other than to other groups"

# %% [markdown]
# Across all {glue:text}`w2v_dim` dimensions, words of the same group have a mean cosine of
# {glue:text}`group_cos_same:.2f` with each other, against {glue:text}`group_cos_diff:.2f` across
# groups.
#
# ## 3. Matrix factorization by alternating least squares
#
# A recommender's data is a sparse user × item matrix $R$. Matrix factorization
# {cite}`koren2009matrix` learns a $k$-dimensional vector per user ($U$) and per item ($V$) so
# that $R \approx U V^\top$ on the observed cells:
#
# $$\min_{U, V} \sum_{(u,i)\ \text{observed}} (r_{ui} - x_u^\top y_i)^2 + \lambda\,(\lVert U\rVert^2 + \lVert V\rVert^2).$$
#
# The problem is not convex in $(U, V)$ jointly, but with $V$ fixed it is a separate ridge
# regression for every user, solved exactly by the normal equations
# $(Y_u^\top Y_u + \lambda I)\,x_u = Y_u^\top r_u$, where $Y_u$ stacks the vectors of the items
# user $u$ rated. **Alternating least squares** solves all users, then all items, and repeats.
# Each half-step minimizes the objective over one block exactly, so the loss can never rise. For
# implicit feedback (clicks, plays), Hu, Koren and Volinsky {cite}`hu2008implicit` regress a 0/1
# preference on *every* cell, weighted by a confidence $1 + \alpha r_{ui}$ — the same solve with
# weights, which `E.als(..., alpha=...)` implements. The tests check every half-step against
# scikit-learn's `Ridge(fit_intercept=False)` row by row.
#
# The data: {glue:text}`als_users` users and {glue:text}`als_items` items with rank-5 true factors,
# {glue:text}`als_density:.0%` of the ratings observed, noise σ = {glue:text}`als_noise`. We fit
# ranks 1 to 12 and score the held-out cells.

# %%
Code(inspect.getsource(E.ridge_rows), language="python")

# %%
als_users, als_items, true_rank, als_noise = pick(SMOKE, 200, 400), pick(SMOKE, 150, 300), 5, 0.1
ratings = E.synthetic_ratings(als_users, als_items, rank=true_rank, density=0.2, noise=als_noise, seed=0)
glue("als_users", als_users)
glue("als_items", als_items)
glue("als_density", ratings.mask.mean())
glue("als_noise", als_noise)
als_ranks = [1, 2, 3, 4, 5, 6, 8, 12]
held_out = ~ratings.mask
als_rmse, als_fits = {}, {}
for k in tqdm(als_ranks, desc="ALS ranks"):
    fit = E.als(ratings.R, ratings.mask, rank=k, lam=0.5, iters=pick(SMOKE, 8, 15), seed=0)
    err = fit.U @ fit.V.T - ratings.R
    als_rmse[k] = (float(np.sqrt((err[ratings.mask] ** 2).mean())), float(np.sqrt((err[held_out] ** 2).mean())))
    als_fits[k] = fit
angles = np.degrees(E.principal_angles(ratings.U, als_fits[true_rank].U))
angles_v = np.degrees(E.principal_angles(ratings.V, als_fits[true_rank].V))
best_rank = min(als_rmse, key=lambda k: als_rmse[k][1])

fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                    subplot_titles=("RMSE against the rank of the fit", f"objective after each half-step (rank {true_rank})"))
for j, (name, color) in enumerate((("observed (training) cells", C[0]), ("held-out cells", C[1]))):
    fig.add_scatter(x=als_ranks, y=[als_rmse[k][j] for k in als_ranks], mode="lines+markers", name=name,
                    line=dict(color=color), row=1, col=1)
fig.add_scatter(x=als_ranks, y=[als_noise] * len(als_ranks), mode="lines", name="noise σ (the floor)",
                line=dict(color="gray", dash="dot"), row=1, col=1)
fig.add_vline(x=true_rank, line_dash="dash", line_color="gray", row=1, col=1)
loss_curve = als_fits[true_rank].losses
fig.add_scatter(x=np.arange(len(loss_curve)) / 2, y=loss_curve, mode="lines+markers", name="ALS objective",
                line=dict(color=C[2]), row=1, col=2)
fig.update_xaxes(title_text="rank k", row=1, col=1)
fig.update_xaxes(title_text="iteration (U then V)", row=1, col=2)
fig.update_yaxes(title_text="RMSE", row=1, col=1)
fig.update_yaxes(type="log", title_text="objective", row=1, col=2)
fig.update_layout(height=430, title="ALS on ratings with planted rank-5 factors", legend=dict(orientation="h", y=-0.22))
fig.show()

glue("als_rmse_true", als_rmse[true_rank][1])
glue("als_rmse_r1", als_rmse[1][1])
glue("als_rmse_r12_train", als_rmse[12][0])
glue("als_rmse_r12", als_rmse[12][1])
glue("als_angle_u", angles.max())
glue("als_angle_v", angles_v.max())
glue("als_best_rank", best_rank)
assert all(np.diff(f.losses).max() <= 1e-9 * f.losses[0] for f in als_fits.values()), "every half-step lowers the loss"
assert angles.max() < 10 and angles_v.max() < 10, "the planted subspaces are recovered"
assert als_rmse[true_rank][1] < 2 * als_noise and als_rmse[true_rank][1] < 0.3 * als_rmse[1][1]
assert als_rmse[12][0] < als_rmse[true_rank][0] and als_rmse[12][1] > als_rmse[true_rank][1], "past the true rank: overfit"
assert best_rank in (4, 5, 6)

# %% [markdown]
# The held-out RMSE falls from {glue:text}`als_rmse_r1:.2f` at rank 1 to
# {glue:text}`als_rmse_true:.3f` at the true rank 5 — close to the noise floor of
# {glue:text}`als_noise` — and the best held-out rank is {glue:text}`als_best_rank`. Beyond it the
# extra dimensions fit noise: at rank 12 the training RMSE keeps falling
# ({glue:text}`als_rmse_r12_train:.3f`) while the held-out RMSE rises ({glue:text}`als_rmse_r12:.3f`).
# The factors themselves are only identifiable up to an invertible $k \times k$ transform
# ($UV^\top = (UA)(VA^{-\top})^\top$), so we compare *subspaces*: the largest principal angle
# between the learned and the planted user factors is {glue:text}`als_angle_u:.1f`°, and
# {glue:text}`als_angle_v:.1f`° for the items. The right panel shows the objective after every
# half-step: it never rises, which is the property that makes ALS easy to run — no learning rate —
# and easy to parallelize, since every user's solve is independent.
#
# ## 4. Two towers with in-batch negatives
#
# Matrix factorization gives a vector only to users and items it has seen. A **two-tower** model
# {cite}`covington2016deep,yi2019sampling` computes them: a user tower maps a user's id and
# features (history, context) to a vector, an item tower maps an item's id and content features
# to another, and the score is their dot product. Item vectors can be computed offline and put in
# an approximate-nearest-neighbour index; serving one user is one tower pass and one index lookup.
#
# The standard training signal is the **in-batch softmax** (InfoNCE {cite}`oord2018cpc`): a batch
# holds $B$ (user, clicked item) pairs; for user $i$ the positive is item $i$ and the other $B-1$
# items in the batch are its negatives,
#
# $$\mathcal L = -\frac1B \sum_i \log \frac{\exp(s_{ii}/\tau)}{\sum_j \exp(s_{ij}/\tau)}, \qquad s_{ij} = u_i^\top v_j,$$
#
# which is exactly `F.cross_entropy(S / τ, arange(B))` (the unit tests check it). The negatives
# are free — their vectors are already computed — but they are not uniform: an item appears in a
# batch as often as it is clicked, so popular items are negatives far more often and the model
# learns to push them down. Yi et al. {cite}`yi2019sampling` correct this by subtracting
# $\log Q_j$, the log of the probability that item $j$ is in the batch, from each logit during
# training (**logQ correction**), so the learned score estimates the click logit instead of
# "click logit minus popularity".

# %%
Code(inspect.getsource(E.in_batch_softmax_loss), language="python")

# %% [markdown]
# The synthetic world has {glue:text}`tt_users:,` users and {glue:text}`tt_items` items with
# hidden 8-dimensional tastes; each user clicks items drawn from
# $\text{softmax}(8\,u^\top v + \log \text{pop})$ with Zipf popularity, the towers see the tastes
# only through noisy features (plus an id embedding), and every user's last click is held out.
# Recall@10 counts how often the held-out item is in the user's top 10, excluding items the user
# already clicked in training. Three references frame it: random ranking, ranking by popularity,
# and the oracle that ranks by the true click logits — the ceiling for any model.

# %%
tt_users, tt_items = pick(SMOKE, 600, 1000), pick(SMOKE, 300, 500)
tt_epochs, tt_k = pick(SMOKE, 5, 12), 10
clicks = E.synthetic_interactions(tt_users, tt_items, dim=8, per_user=10, seed=0)
click_counts = np.bincount(clicks.train[:, 1], minlength=tt_items).astype(float)
baselines = {
    "random": tt_k / tt_items,
    "most popular": E.recall_at_k(np.ones((tt_users, 1)), click_counts[:, None], clicks.test, tt_k, exclude=clicks.train),
    "oracle (true logits)": E.recall_at_k(np.eye(tt_users), clicks.logits.T, clicks.test, tt_k, exclude=clicks.train),
}
runs = {}
for name, log_q in (("in-batch softmax", False), ("in-batch softmax + logQ", True)):
    runs[name] = E.train_two_tower(clicks, epochs=tt_epochs, batch_size=256, temperature=0.1, lr=2e-3,
                                   log_q=log_q, k=tt_k, seed=0)

fig = go.Figure()
for color, (name, res) in zip(C, runs.items()):
    fig.add_scatter(x=list(range(tt_epochs + 1)), y=res.recall, mode="lines+markers", name=name, line=dict(color=color))
for dash, (name, value) in zip(("dot", "dash", "dashdot"), baselines.items()):
    fig.add_scatter(x=[0, tt_epochs], y=[value] * 2, mode="lines", name=name, line=dict(color="gray", dash=dash))
fig.update_layout(height=430, title=f"Two-tower held-out recall@{tt_k} against epochs",
                  xaxis_title="epoch", yaxis_title=f"recall@{tt_k}", legend=dict(orientation="h", y=-0.2))
fig.show()

top_share = click_counts.max() / click_counts.sum()
glue("tt_users", tt_users)
glue("tt_items", tt_items)
glue("tt_top_share", top_share)
glue("tt_random", baselines["random"])
glue("tt_pop", baselines["most popular"])
glue("tt_oracle", baselines["oracle (true logits)"])
glue("tt_plain", runs["in-batch softmax"].recall[-1])
glue("tt_logq", runs["in-batch softmax + logQ"].recall[-1])
glue("tt_logq_vs_random", runs["in-batch softmax + logQ"].recall[-1] / baselines["random"])
plain, corrected = runs["in-batch softmax"].recall, runs["in-batch softmax + logQ"].recall
assert corrected[-1] > 5 * baselines["random"] and plain[-1] > 3 * baselines["random"], "training beats random"
assert corrected[-1] > baselines["most popular"], "the towers personalize beyond popularity"
assert corrected[-1] > plain[-1] + 0.05, "logQ correction recovers the popular items the plain loss suppresses"
assert corrected[-1] < baselines["oracle (true logits)"]

# %% [markdown]
# Both models leave random ranking ({glue:text}`tt_random:.1%`) far behind. With the plain in-batch
# loss the towers end at recall@10 = {glue:text}`tt_plain:.2f`; with logQ correction at
# {glue:text}`tt_logq:.2f`, above the popularity baseline ({glue:text}`tt_pop:.2f`) and below the
# oracle ({glue:text}`tt_oracle:.2f`). The gap between the two runs is the sampling bias: the most
# clicked item alone is {glue:text}`tt_top_share:.0%` of the training clicks, so it is a negative
# in nearly every batch, and the plain loss learns to rank it low for everyone — the model learns
# something like pointwise mutual information, which is good for "surprising" recommendations and
# bad for recall. Subtracting $\log Q$ during training (and not at serving) removes exactly that
# term.
#
# The temperature $\tau$ matters as much. The seed notes quote τ ≈ 0.05 for InfoNCE and CLIP's
# initial 0.07. Unit vectors have scores in $[-1, 1]$, so $1/\tau$ sets how peaked the softmax can
# be; too large a $\tau$ and the loss cannot separate the positive from the negatives at all:

# %%
taus = pick(SMOKE, [0.05, 0.1, 1.0], [0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
tau_recall = {}
for tau in tqdm(taus, desc="temperatures"):
    tau_recall[tau] = E.train_two_tower(clicks, epochs=pick(SMOKE, 3, 8), batch_size=256, temperature=tau, lr=2e-3,
                                        log_q=True, k=tt_k, seed=0).recall[-1]
fig = go.Figure(go.Scatter(x=taus, y=list(tau_recall.values()), mode="lines+markers", line=dict(color=C[1])))
fig.update_layout(height=380, title="Recall@10 against the softmax temperature (logQ-corrected, fixed epochs)",
                  xaxis=dict(type="log", title="temperature τ"), yaxis_title="recall@10")
fig.show()
best_tau = max(tau_recall, key=tau_recall.get)
glue("best_tau", best_tau)
glue("tau1_recall", tau_recall[1.0])
glue("best_tau_recall", tau_recall[best_tau])
assert best_tau <= 0.2 and tau_recall[best_tau] > tau_recall[1.0] + 0.05

# %% [markdown]
# The best temperature here is τ = {glue:text}`best_tau` (recall {glue:text}`best_tau_recall:.2f`),
# and τ = 1 reaches only {glue:text}`tau1_recall:.2f`. The seeds' 0.05–0.07 is the right order of
# magnitude — a small temperature is essential — but the best value moves with the dimension, the
# batch size and the training length (compare the SMOKE and full runs of this notebook), so it is
# tuned, or learned as CLIP does.
#
# :::{admonition} Interview angle: "what goes wrong with in-batch negatives?"
# :class: tip
# Three things. **Popularity bias**: negatives follow the click distribution, so popular items are
# over-penalized; correct with logQ (measured above: recall@10 {glue:text}`tt_plain:.2f` →
# {glue:text}`tt_logq:.2f`). **Few and easy negatives**: B − 1 per example, mostly irrelevant —
# add a cache or queue of negatives (mixed negative sampling, MoCo) or mined hard negatives for
# the last points of quality. **Accidental positives**: another row's item may be one this user
# also likes; with a large catalogue it is rare, with a small one mask duplicates. Say also that
# towers must not share features across sides (no user-item cross features), because the item side
# is precomputed for the index — that is the price of the architecture, paid back by serving cost.
# :::
#
# ## 5. Sentence embeddings of real documentation
#
# word2vec gives one vector per word, whatever its context. Sentence encoders give one vector per
# text: all-MiniLM-L6-v2 {cite}`wang2020minilm` is a six-layer transformer distilled from a larger
# one and then trained like Sentence-BERT {cite}`reimers2019sentence` — contrastively, with
# in-batch negatives as above, on about a billion sentence pairs — so that a question lands near
# the passage that answers it. `companion.sentence` runs it from the bundled weights and caches
# the vectors on disk. The items are the paragraphs of the Python documentation: of the
# {glue:text}`n_encoded` encoded here, {glue:text}`n_copies` repeat another paragraph word for
# word (pages such as the sequence types share text), which leaves {glue:text}`n_paragraphs`
# distinct ones. Each paragraph's topic is the documentation page it came from.

# %%
all_paragraphs = python_docs_paragraphs()
paragraphs = all_paragraphs[:300] if SMOKE else all_paragraphs
from pydoc_data.topics import topics as _topics  # the page each paragraph comes from, in the same order

topic_of = [k for k in sorted(_topics) for p in _topics[k].strip().split("\n\n") if len(p.strip()) >= 200]
assert len(topic_of) == len(all_paragraphs)
topic_of = topic_of[: len(paragraphs)]
start = time.perf_counter()
X_all = sentence.encode(paragraphs)  # (n, 384) float32, unit rows; cached on disk after the first run
glue("encode_s", time.perf_counter() - start)
# Several pages repeat paragraphs verbatim (e.g. the sequence-type pages); keep each text once,
# so that a paragraph's nearest neighbour is never its own copy.
first = sorted({p: i for i, p in reversed(list(enumerate(paragraphs)))}.values())
glue("n_copies", len(paragraphs) - len(first))
glue("n_encoded", len(paragraphs))
X, paragraphs, topic_of = X_all[first], [paragraphs[i] for i in first], [topic_of[i] for i in first]
glue("n_paragraphs", len(paragraphs))
glue("n_topics", len(set(topic_of)))
assert X.shape == (len(paragraphs), sentence.DIM) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)

queries = ["How do I catch an exception and clean up afterwards?",
           "What makes an object usable as a dictionary key?",
           "How does a for loop iterate over a sequence?",
           "How do I format a number with a fixed number of decimals?"]
Q = sentence.encode(queries, progress=False)
top = {q: E.rank(Q[i], X, "cosine", k=3) for i, q in enumerate(queries)}
assert any(w in paragraphs[top[queries[0]][0]].lower() for w in ("except", "finally", "exception"))
Markdown("| query | top 3 paragraphs by cosine (topic, cosine, first 100 characters) |\n|---|---|\n" + "\n".join(
    f"| {q} | " + "<br>".join(f"[{topic_of[j]}, {float(Q[i] @ X[j]):.2f}] {short(paragraphs[j])}" for j in top[q]) + " |"
    for i, q in enumerate(queries)))

# %%
# Do neighbours share a page? For each paragraph: is its nearest other paragraph from the same topic?
S = X @ X.T
np.fill_diagonal(S, -np.inf)
nn_same = float(np.mean([topic_of[j] == topic_of[i] for i, j in enumerate(S.argmax(1))]))
topic_sizes = np.array(list(Counter(topic_of).values()))
chance_same = float(((topic_sizes * (topic_sizes - 1)).sum()) / (len(topic_of) * (len(topic_of) - 1)))
glue("nn_same_topic", nn_same)
glue("chance_same_topic", chance_same)
print(f"nearest neighbour from the same page: {nn_same:.0%} (a random other paragraph: {chance_same:.0%})")
assert nn_same > 3 * chance_same

# %% [markdown]
# Without any training on this corpus, the nearest neighbour of a paragraph comes from the same
# documentation page {glue:text}`nn_same_topic:.0%` of the time, against
# {glue:text}`chance_same_topic:.0%` for a random other paragraph. The queries above are phrased as
# questions, not as the documentation's wording, and still find the relevant passages — the gain over
# word matching that the retrieval chapters build on.
#
# ## 6. Cosine, dot product and L2 — and why normalization matters
#
# Three scores are in use: the dot product $a^\top b$, the cosine $a^\top b / (\lVert a\rVert \lVert b\rVert)$
# and the L2 distance $\lVert a - b\rVert$. For unit vectors they are one ranking:
# $\lVert a - b\rVert^2 = 2 - 2\cos(a, b)$ and $a^\top b = \cos(a, b)$. That is why vector databases
# store normalized vectors and run inner-product search. When norms vary, the dot product ranks by
# $\lVert b\rVert \cos(a, b)$ and the norm can dominate. Norms carry real signals in production —
# item vectors trained with a dot-product loss grow with popularity, and some text encoders'
# unnormalized outputs grow with length or frequency. To show the effect on real vectors, give each
# MiniLM paragraph vector a norm proportional to its length in characters (a stand-in for such an
# encoder) and rank for the first query:

# %%
lengths = np.array([len(p) for p in paragraphs], dtype=float)
raw = X * (lengths / np.median(lengths))[:, None]  # same directions, norms ∝ paragraph length
q0 = Q[0]
k10 = 10
by = {m: E.rank(q0, raw, m, k=k10) for m in E.METRICS}
by_unit = {m: E.rank(q0, E.normalize(raw), m) for m in E.METRICS}
overlap_dot = len(set(by["dot"]) & set(by["cosine"])) / k10
len_rank = lambda idx: float(np.mean([(lengths > lengths[j]).mean() for j in idx]))  # noqa: E731
glue("dot_overlap", overlap_dot)
glue("dot_len_pct", 1 - len_rank(by["dot"]))
glue("cos_len_pct", 1 - len_rank(by["cosine"]))
glue("norm_ratio", float(lengths.max() / lengths.min()))
cos_all = E.cosine_similarity(q0, raw)[0]
glue("cos_top_spread", float(cos_all[by["cosine"]].max() / cos_all[by["cosine"]].min()))
glue("l2_len_pct", 1 - len_rank(by["l2"]))
assert len_rank(by["l2"]) > len_rank(by["cosine"]) > len_rank(by["dot"]), "L2 favours short, dot long paragraphs"
assert all(np.array_equal(by_unit["cosine"], by_unit[m]) for m in E.METRICS), "unit vectors: one ranking"
assert np.array_equal(E.rank(q0, X, "dot"), E.rank(q0, X, "l2")), "MiniLM's own (unit) vectors too"
assert overlap_dot < 0.5, "with norms ∝ length, the dot product mostly returns long paragraphs"
assert np.array_equal(by["cosine"], by_unit["dot"][:k10]), "normalizing restores the cosine ranking"

fig = go.Figure()
for color, (m, name) in zip(C, (("cosine", "cosine (= dot after normalizing)"), ("dot", "dot product, raw vectors"),
                                ("l2", "L2, raw vectors"))):
    fig.add_scatter(x=lengths[by[m]], y=cos_all[by[m]], mode="markers", name=name, marker=dict(size=11, color=color,
                    symbol=["circle", "x", "diamond"][E.METRICS.index(m)]),
                    text=[short(paragraphs[j], 80) for j in by[m]], hovertemplate="%{text}<extra></extra>")
fig.add_scatter(x=lengths, y=cos_all, mode="markers", name="all paragraphs", marker=dict(size=4, color="#cccccc"),
                hoverinfo="skip")
fig.update_layout(height=440, xaxis=dict(type="log", title="paragraph length (characters) ∝ vector norm"),
                  yaxis_title="cosine with the query", title=f"Top {k10} for “{queries[0]}” under three scores")
fig.show()

# %% [markdown]
# The grey cloud is every paragraph: its cosine with the query against its length. The cosine's
# top 10 (blue) sits at the top of the cloud. The dot product's top 10 (red crosses) shares only
# {glue:text}`dot_overlap:.0%` of it and slides to the right: on average its results are longer
# than {glue:text}`dot_len_pct:.0%` of the paragraphs (the cosine's: {glue:text}`cos_len_pct:.0%`),
# because the norms span a factor of {glue:text}`norm_ratio:.0f` while the cosines of the best ten
# matches differ by at most {glue:text}`cos_top_spread:.2f`×. L2 fails the other way: it penalizes a
# long vector for being far from the query, so it favours *short* paragraphs (its top 10 are longer
# than only {glue:text}`l2_len_pct:.0%` of the paragraphs on average). Normalizing the rows makes all three rankings equal
# the cosine's — asserted above, for the scaled vectors and for MiniLM's own unit vectors.
#
# :::{admonition} Interview angle: "cosine or dot product?"
# :class: tip
# Use the score the model was trained with. If the training loss normalized the vectors (most
# sentence encoders, CLIP, two towers like ours), normalize at indexing and query time and use
# inner product — it then *is* the cosine, and L2 gives the same ranking. If the loss used raw dot
# products (matrix factorization, some recommenders), the norm is part of the prediction — often
# popularity — and normalizing throws that away; that can be what you want (diversity) or a recall
# loss. A corpus that mixes norms (several models, or a model upgrade) silently breaks inner-product
# search, which is why embedding pipelines normalize in one place and version the model with the index.
# :::
#
# ## 7. Distance concentration in high dimensions
#
# For $n$ points with independent coordinates, Beyer et al. {cite}`beyer1999nearest` showed that
# the **relative contrast** $(D_{\max} - D_{\min}) / D_{\min}$ of the distances from a query goes to
# zero as the dimension $d$ grows: the farthest point is barely farther than the nearest, so
# "nearest" loses its meaning; Aggarwal et al. {cite}`aggarwal2001surprising` measured how the
# choice of norm changes the rate. For Gaussian data the distances concentrate around
# $\sqrt{2d}$ with a spread that stays constant, so the contrast shrinks like $1/\sqrt d$. Real
# embeddings are not i.i.d.: their variance lives in far fewer directions than their width. We
# measure both: Gaussian data at $d = 2 \dots 4096$ (as many points as paragraphs), and the MiniLM
# vectors projected onto their top-$d$ principal components, up to the full 384.

# %%
n_q = 20
dims = [2, 4, 8, 16, 32, 64, 128, 256, 384, 1024, 4096]
gauss = E.gaussian_contrast(dims, n_points=len(X) - n_q, n_queries=n_q, seed=0)
proj_full, _, evr = E.pca(X, min(len(X), sentence.DIM) - 1)
centred = X - X.mean(0)
pc_dims = [d for d in dims if d <= sentence.DIM]
rng = np.random.default_rng(0)
qi = rng.choice(len(X), n_q, replace=False)
rest = np.setdiff1d(np.arange(len(X)), qi)


def minilm_contrast(Z: np.ndarray) -> float:
    return float(E.relative_contrast(Z[rest], Z[qi]).mean())


real = [minilm_contrast(proj_full[:, :d]) if d < sentence.DIM else minilm_contrast(centred) for d in pc_dims]
shuffled = np.stack([rng.permutation(col) for col in X.T], 1)  # each coordinate shuffled: marginals kept, structure gone
shuffled_contrast = minilm_contrast(shuffled)
d90 = int(np.searchsorted(np.cumsum(evr), 0.9) + 1)

fig = go.Figure()
fig.add_scatter(x=dims, y=gauss, mode="lines+markers", name="Gaussian N(0, I_d)", line=dict(color=C[0]))
fig.add_scatter(x=pc_dims, y=real, mode="lines+markers", name="MiniLM, top-d principal components",
                line=dict(color=C[1]))
fig.add_scatter(x=[sentence.DIM], y=[shuffled_contrast], mode="markers", name="MiniLM, coordinates shuffled",
                marker=dict(symbol="x", size=12, color=C[3]))
fig.add_scatter(x=dims, y=gauss[-1] * np.sqrt(dims[-1] / np.array(dims)), mode="lines", name="∝ 1/√d",
                line=dict(color="gray", dash="dot"))
fig.update_layout(height=440, title="Relative contrast (max − min) / min of distances from a query",
                  xaxis=dict(type="log", title="dimension d"), yaxis=dict(type="log", title="relative contrast"),
                  legend=dict(orientation="h", y=-0.2))
fig.show()
g = dict(zip(dims, gauss))
glue("rc_gauss_2", g[2])
glue("rc_gauss_384", g[384])
glue("rc_gauss_4096", g[4096])
glue("rc_minilm", real[-1])
glue("rc_shuffled", shuffled_contrast)
glue("rc_minilm_vs_gauss", real[-1] / g[384])
glue("d90", d90)
assert np.all(np.diff(gauss) < 0) and g[4096] < 0.1 < 2 < g[2], "Gaussian contrast collapses with d"
assert real[-1] > 2 * g[384], "real embeddings keep far more contrast than i.i.d. data of the same width"
assert shuffled_contrast < real[-1], "shuffling the coordinates destroys the structure that kept it"

# %% [markdown]
# For Gaussian data the contrast falls from {glue:text}`rc_gauss_2:.1f` at $d = 2$ to
# {glue:text}`rc_gauss_384:.2f` at 384 and {glue:text}`rc_gauss_4096:.3f` at 4096, close to the
# $1/\sqrt d$ line once $d$ passes a few dozen: the concentration is real. The MiniLM vectors, 384 wide, keep a contrast of
# {glue:text}`rc_minilm:.2f` — {glue:text}`rc_minilm_vs_gauss:.1f`× the Gaussian value at the same
# width — because their variance is concentrated: {glue:text}`d90` principal components hold 90%
# of it, and the curve flattens once $d$ passes the directions that carry the structure. Shuffling
# each coordinate independently keeps every marginal but destroys the correlations, and the
# contrast drops to {glue:text}`rc_shuffled:.2f`. So the seed's "curse of dimensionality: all
# points equidistant" holds for i.i.d. data and is much weaker for real embeddings, whose
# *intrinsic* dimension is what counts. It still bites: approximate-nearest-neighbour indexes work
# because real data have low intrinsic dimension, and degrade on data that look like noise.
#
# ## 8. A map of the documentation
#
# A 2-D map cannot keep 384-dimensional distances, so it has to choose what to keep. PCA keeps
# the directions of largest variance (global, linear); UMAP {cite}`mcinnes2018umap` builds a
# nearest-neighbour graph and lays it out so neighbours stay neighbours (local, non-linear). Their
# **trustworthiness** — how many of a point's 10 nearest neighbours on the map were also near in
# the original space, 1 being perfect {cite}`venna2001neighborhood` — measures that choice. Colours
# are k-means clusters of the full vectors; hover over a point to read its paragraph. (In SMOKE mode
# the map is PCA's: UMAP's first call compiles its numba kernels, which takes most of a minute.)

# %%
n_clusters = 8
clusters = KMeans(n_clusters, n_init=4, random_state=0).fit_predict(X)
pca_xy, _, _ = E.pca(X, 2)
trust_pca = float(trustworthiness(X, pca_xy, n_neighbors=10, metric="cosine"))
if SMOKE:
    map_xy, map_name, trust_map = pca_xy, "PCA", trust_pca
else:
    start = time.perf_counter()
    map_xy, map_name = E.umap_2d(X, n_neighbors=15, min_dist=0.1, metric="cosine", n_epochs=200, seed=0), "UMAP"
    glue("umap_s", time.perf_counter() - start)
    trust_map = float(trustworthiness(X, map_xy, n_neighbors=10, metric="cosine"))
    assert trust_map > trust_pca, "UMAP keeps local neighbourhoods better than PCA"
cluster_topics = {c: Counter(t for t, k in zip(topic_of, clusters) if k == c).most_common(3) for c in range(n_clusters)}
names = {c: " / ".join(t for t, _ in cluster_topics[c][:2]) for c in range(n_clusters)}
fig = go.Figure()
for c in range(n_clusters):
    sel = np.nonzero(clusters == c)[0]
    fig.add_scatter(x=map_xy[sel, 0], y=map_xy[sel, 1], mode="markers", name=f"{c}: {names[c]}",
                    marker=dict(size=6, color=C[c % len(C)], opacity=0.8),
                    customdata=np.array([[topic_of[j], short(paragraphs[j]).replace("\\|", "|")] for j in sel]),
                    hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]}<extra>cluster " + str(c) + "</extra>")
fig.update_layout(height=620, title=f"{len(X)} documentation paragraphs, MiniLM vectors mapped by {map_name} "
                  f"(trustworthiness {trust_map:.2f})", xaxis_title=f"{map_name} 1", yaxis_title=f"{map_name} 2",
                  legend=dict(title="k-means cluster: its top pages", font=dict(size=10)))
fig.show()
glue("trust_pca", trust_pca)
glue("trust_map", trust_map)
glue("map_name", map_name)
purity = float(np.mean([cluster_topics[c][0][1] / max(1, (clusters == c).sum()) for c in range(n_clusters)]))
glue("cluster_purity", purity)
assert trust_pca > 0.5 and purity > 0.2

# %% [markdown]
# The map is drawn by {glue:text}`map_name`, with trustworthiness {glue:text}`trust_map:.2f`
# against PCA's {glue:text}`trust_pca:.2f`. The clusters line up with documentation pages — on
# average {glue:text}`cluster_purity:.0%` of a cluster's paragraphs come from its most common page,
# although k-means never saw the page names — and neighbouring clusters are related pages
# (hover over the points where two colours meet). Read a UMAP
# map for its neighbourhoods and clusters; the distances *between* clusters and the sizes of
# clusters are not preserved and should not be interpreted.
#
# ## 9. The seeds' claims, measured
#
# Interview notes repeat a set of claims about embeddings. Each is checked against this chapter's
# measurements; ✔ holds, ✘ does not, ≈ holds with a caveat.

# %%
text8_h = 3 * 17_005_207 / words_per_s / 3600
hapax_types, hapax_tokens = len(hapax) / len(type_counts), len(hapax) / len(tokens)
seed_claims = [
    ("Embedding widths: 32 (small recs), 128 (items), 384–768 (sentences)", "000 L211",
     f"all-MiniLM-L6-v2 is {sentence.DIM}-d; our word vectors {w2v_cfg['dim']}-d, towers 32-d", "✔ (typical, not a law)"),
    ("The embedding table is nn.Embedding(V, D): row i is object i", "000 L214",
     "one-hot × W equals the lookup (asserted)", "✔"),
    ("word2vec trains in minutes on CPU for 10⁹ tokens", "000 L223",
     f"{words_per_s:,.0f} words/s here → {1e9 / words_per_s / 3600:.1f} h per epoch of 10⁹ tokens",
     "✔" if 1e9 / words_per_s < 1800 else "✘"),
    ("3 epochs of text8 ≈ 30 min on CPU", "003 L1439",
     f"{text8_h:.1f} h at this rate", "✔" if 0.25 < text8_h < 1 else "≈ same order" if 0.1 < text8_h < 3 else "✘"),
    ("Initial SGNS loss is log 2", "003 L1398", f"{init_loss:.3f} = {init_loss / math.log(2):.0f} log 2 with K = 5", "✘"),
    ("Subsampling: discard 1 − √(t/f), t = 1e-5 vs keep √(t/f) + t/f, t = 1e-4", "003 L1170, L1362",
     f"they keep {kept_share['paper, t = 1e-5']:.0%} vs {kept_share['word2vec.c, t = 1e-4']:.0%} of tokens here",
     "both exist; different rules"),
    ("Negatives from unigram^0.75", "003 L1162", "table frequencies ∝ count^0.75 (tested)", "✔"),
    ("P(negative = positive) ≤ 1/|V|", "003 L1415", f"{p_collide:.4f} = {p_collide * len(vocab):.0f}× 1/|V|",
     "✔" if p_collide <= 1 / len(vocab) else "✘"),
    ("~50% of types are hapaxes holding < 2% of tokens", "003 L928",
     f"{hapax_types:.0%} of types, {hapax_tokens:.1%} of tokens",
     ("✔" if 0.4 < hapax_types < 0.6 else "✘ share of types here") + (" / ✔ < 2% of tokens" if hapax_tokens < 0.02 else "")),
    ("ALS and SGD both solve MF; ALS half-steps are exact", "000 L227, L311",
     f"every half-step = sklearn Ridge (tested); loss never rises; planted subspace within {angles.max():.1f}°", "✔"),
    ("Two-tower + in-batch negatives is the modern retrieval recipe", "000 L231",
     f"recall@10 {runs['in-batch softmax'].recall[-1]:.2f} plain, {runs['in-batch softmax + logQ'].recall[-1]:.2f} "
     f"with logQ (random {baselines['random']:.2f})", "≈ needs logQ"),
    ("InfoNCE temperature ≈ 0.05–0.07", "003 L3908, L12759", f"best τ here {best_tau}; τ = 1 loses "
     f"{tau_recall[best_tau] - tau_recall[1.0]:.2f} recall", "✔" if best_tau <= 0.07 else "≈ small τ matters; best here larger"),
    ("cos ≡ dot on unit vectors", "003 L671, 004 L2686", "identical rankings (asserted), also L2", "✔"),
    ("Curse of dimensionality: all points become equidistant", "004 L2696, 003 L495",
     f"Gaussian contrast {g[384]:.2f} at d = 384; MiniLM {real[-1]:.2f}", "✔ i.i.d. / ≈ real data"),
]
Markdown("| claim | source | measured here | verdict |\n|---|---|---|---|\n" + "\n".join(
    f"| {c} | {s} | {m} | {v} |" for c, s, m, v in seed_claims))

# %% [markdown]
# Three deserve a sentence. The two word2vec speed claims cannot both hold: at the rate that
# makes three epochs of text8 take {glue:text}`text8_3ep_hours:.1f` hours, one epoch of 10⁹ tokens
# takes {glue:text}`hours_1e9:.1f` hours, not minutes. The hapax share is a property of the corpus:
# the Python documentation repeats a small technical vocabulary, so only
# {glue:text}`hapax_type_share:.0%` of its distinct words occur once. And "all points are
# equidistant" is a statement about i.i.d. coordinates; real embeddings keep {glue:text}`rc_minilm_vs_gauss:.1f`× more contrast than
# Gaussian data of the same width, which is why nearest-neighbour search over them works at all.
#
# ## 10. Check yourself
#
# Replace each `...` with your answer and run the cell; `check` says whether it is right.
#
# **1.** A skip-gram model with K = 10 negatives starts with all output vectors at zero. What is its
# first loss per pair, in nats? (Two decimals.)

# %%
answer_1 = ...
check(answer_1, E.SkipGram(5, 4)(torch.tensor([0]), torch.tensor([1]), torch.zeros(1, 10, dtype=torch.long)).item())

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $11 \log 2 \approx 7.62$. With $v = 0$ and $n_k = 0$ every score is 0 and every term is
# $-\log \sigma(0) = \log 2$: one for the positive and one for each of the 10 negatives.
# :::
#
# **2.** Two unit vectors have cosine similarity 0.6. What is their L2 distance? (Two decimals.)

# %%
answer_2 = ...
a2 = np.array([1.0, 0.0])
b2 = np.array([0.6, 0.8])
check(answer_2, float(E.l2_distance(a2, b2)[0, 0]))

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $\lVert a - b\rVert^2 = 2 - 2\cos = 0.8$, so the distance is $\sqrt{0.8} \approx 0.89$. For unit
# vectors L2 is a decreasing function of the cosine, which is why the rankings agree.
# :::
#
# **3.** In a batch of $B = 4$ pairs whose towers output identical vectors for every user and item
# (the model has learned nothing), what is the in-batch softmax loss? (Two decimals.)

# %%
answer_3 = ...
same_vecs = F.normalize(torch.ones(4, 8), dim=-1)
check(answer_3, E.in_batch_softmax_loss(same_vecs, same_vecs, temperature=0.1).item())

# %% [markdown]
# :::{admonition} Solution
# :class: dropdown
# $\log B = \log 4 \approx 1.39$: all logits are equal, so the softmax is uniform over the batch and
# the positive gets probability $1/B$. A model that learned nothing sits at $\log B$, which is a
# useful sanity check at the start of training — and why the loss's scale grows with batch size.
# :::

# %% tags=["remove-cell"]
# The solutions, checked, so the exercises cannot drift from the code (hidden in the rendered book).
assert check(round(11 * math.log(2), 2),
             E.SkipGram(5, 4)(torch.tensor([0]), torch.tensor([1]), torch.zeros(1, 10, dtype=torch.long)).item())
assert check(round(math.sqrt(0.8), 2), float(E.l2_distance(a2, b2)[0, 0]))
assert check(round(math.log(4), 2), E.in_batch_softmax_loss(same_vecs, same_vecs, temperature=0.1).item())

# %% [markdown]
# ## Summary
#
# - An embedding table is a learned (V, d) matrix; a one-hot vector times it is a row lookup. The
#   training objective decides what "close" means.
# - word2vec's skip-gram with negative sampling is K + 1 logistic regressions per (center, context)
#   pair, with frequent words subsampled and negatives drawn from unigram^0.75. On a 60k-token
#   corpus it gives sensible neighbours and a few analogies; at this implementation's speed a
#   billion tokens is hours, not minutes.
# - ALS alternates exact ridge regressions; its loss never rises, and at the right rank it recovers
#   the planted factor subspaces and reaches the noise floor on held-out ratings.
# - Two towers trained with in-batch softmax beat popularity only once the logQ correction removes
#   the popularity bias of in-batch negatives; a small temperature (0.05–0.2 here) matters as much.
# - For unit vectors cosine, dot product and L2 rank identically; with unequal norms the dot product
#   follows the norm. Normalize in one place, and score the way the model was trained.
# - Distances concentrate for i.i.d. high-dimensional data; real embeddings keep far more contrast
#   because their intrinsic dimension is low. A 2-D map keeps neighbourhoods (UMAP) or variance
#   (PCA), never both.
