"""The ``hf:`` text encoder on tiny GPT-2-like and BERT-like models built from configs and saved to a folder,
loaded back through ``from_pretrained`` exactly as a hub name would be (offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from mmkit import text_hf  # noqa: E402
from mmkit.data import Dataset, Record  # noqa: E402
from mmkit.text import compute_text_features, make_text_encoder, out_of_fold_logits  # noqa: E402
from mmkit.text_hf import HFClassifier, HFEmbedder, HFTextEncoder, pool  # noqa: E402

WORDS = {
    "sweet": ["apple", "pie", "cake", "cream", "honey", "tart"],
    "savory": ["salmon", "steak", "cheese", "garlic", "bacon", "onion"],
}
FILLER = ["the", "a", "with", "fresh", "homemade", "and", "best", "recipe"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
FAST = dict(progress=False, device="cpu", batch_size=8)
CLF = dict(mode="classifier", epochs=8, lr=3e-3, warmup=0.0, dropout=0.0, **FAST)


def toy(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Three class words and one filler word: separable by word identity, not by length or position."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        c = ("sweet", "savory")[i % 2]
        words = [*rng.choice(WORDS[c], 3, replace=False), rng.choice(FILLER)]
        texts.append(" ".join(rng.permutation(words)))
        labels.append(c)
    return texts, labels


def _word_level(bert: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {
        t: i for i, t in enumerate(SPECIALS + sorted({w for ws in WORDS.values() for w in ws} | set(FILLER)))
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return tok, vocab


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> str:
    """GPT-2-like: no pad token, and a tokenizer that pads on the LEFT by default (as many causal models'
    do), so the encoder's right padding and last-token pooling are really exercised."""
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-gpt2")
    tok, vocab = _word_level(bert=False)
    eos = vocab["<|endoftext|>"]
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        padding_side="left",
    ).save_pretrained(path)  # fmt: skip
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    GPT2Model(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    tok, vocab = _word_level(bert=True)
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(path)  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, pad_token_id=vocab["[PAD]"],
    )  # fmt: skip
    BertModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(params=["gpt2", "bert"])
def model_dir(request, gpt2_dir, bert_dir) -> str:
    return gpt2_dir if request.param == "gpt2" else bert_dir


def test_pool_counts_real_tokens_only():
    h = torch.randn(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.equal(pool(h, right, "last")[0], h[0, 2]) and torch.equal(pool(h, left, "last")[0], h[0, 4])
    assert torch.allclose(pool(h, right, "mean")[0], h[0, :3].mean(0))
    assert torch.allclose(pool(h, right, "mean")[1], h[1].mean(0))
    assert torch.equal(pool(h, right, "cls"), h[:, 0])
    with pytest.raises(ValueError, match="pooling"):
        pool(h, right, "max")


def test_features_shape_determinism_and_reload(model_dir):
    texts, _ = toy(10, seed=0)
    enc = make_text_encoder(f"hf:{model_dir}", **FAST)
    assert isinstance(enc, HFEmbedder) and isinstance(enc, HFTextEncoder) and enc.kind == "embedding"
    x = enc.transform(texts)
    assert x.shape == (10, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.abs(x[:, None] - x[None]).sum(-1)[~np.eye(10, dtype=bool)].min() > 1e-4  # texts differ
    assert np.array_equal(x, enc.transform(texts))
    assert not any(p.requires_grad for p in enc.base_model.parameters()) and not enc.base_model.training
    text_hf._CACHE.clear()  # load from disk again: same weights, same vectors
    assert np.allclose(x, make_text_encoder(f"hf:{model_dir}", **FAST).transform(texts), atol=1e-6)
    assert enc.pooling == ("last" if "gpt2" in model_dir else "mean")  # "auto" read the saved config


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_gpt2_pooling_ignores_padding(gpt2_dir, pooling):
    from transformers import AutoModel, AutoTokenizer

    short, long = "apple pie", "the best homemade apple pie with fresh cream and honey and cheese"
    enc = HFTextEncoder(gpt2_dir, pooling=pooling, normalize=False, **FAST)
    alone = enc.transform([short])[0]
    batched = enc.transform([long, short, ""])  # padded to the long text
    assert np.allclose(batched[1], alone, atol=1e-5)
    assert np.isfinite(batched[2]).all()  # an empty text still gets a vector, alone or not
    assert np.allclose(enc.transform([""])[0], batched[2], atol=1e-5)
    # reference: the model on the short text's ids without any padding
    ids = AutoTokenizer.from_pretrained(gpt2_dir)(short, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = AutoModel.from_pretrained(gpt2_dir)(input_ids=ids).last_hidden_state[0]
    ref = hidden[-1] if pooling == "last" else hidden.mean(0)
    assert np.allclose(alone, ref.numpy(), atol=1e-5)
    assert not np.allclose(enc.transform([long])[0], alone, atol=1e-3)  # the test can tell texts apart


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_pooling_ignores_padding(bert_dir, pooling):
    enc = HFTextEncoder(bert_dir, pooling=pooling, normalize=False, **FAST)
    short, long = "garlic steak", "the best homemade garlic steak with fresh onion and cheese and bacon"
    assert np.allclose(enc.transform([long, short])[1], enc.transform([short])[0], atol=1e-5)


def test_truncation_and_bad_options(gpt2_dir):
    long = " ".join(["apple"] * 100)  # longer than the model's 32 positions
    enc = HFTextEncoder(gpt2_dir, max_length=8, pooling="mean", **FAST)
    assert np.allclose(enc.transform([long])[0], enc.transform([" ".join(["apple"] * 8)])[0], atol=1e-6)
    assert np.isfinite(HFTextEncoder(gpt2_dir, max_length=512, **FAST).transform([long])).all()
    with pytest.raises(ValueError, match="decoder-only"):
        HFTextEncoder(gpt2_dir, pooling="cls", **FAST).transform(["apple"])
    with pytest.raises(ValueError, match="pooling"):
        HFTextEncoder(gpt2_dir, pooling="max")
    with pytest.raises(ValueError, match="mode"):
        HFTextEncoder(gpt2_dir, mode="finetune")
    with pytest.raises(OSError, match="local folder"):
        HFTextEncoder("no-such-org/no-such-model", local_files_only=True, **FAST).transform(["x"])


def test_classifier_learns_a_separable_task(model_dir):
    texts, labels = toy(32, seed=1)
    held, held_labels = toy(12, seed=2)
    state = torch.get_rng_state()
    clf = make_text_encoder(f"hf:{model_dir}", **CLF).fit(texts, labels)
    assert torch.equal(state, torch.get_rng_state())  # seeding did not touch the caller's RNG
    assert isinstance(clf, HFClassifier) and clf.kind == "logits" and clf.classes_ == ["savory", "sweet"]
    logits = clf.predict_logits(held)
    assert logits.shape == (12, 2) and np.isfinite(logits).all()
    assert np.array_equal(clf.transform(held), logits)
    assert np.mean(np.array(clf.predict(held)) == np.array(held_labels)) >= 0.9
    # columns follow classes_: a given class order flips them
    flipped = make_text_encoder(f"hf:{model_dir}", classes=["sweet", "savory"], **CLF).fit(texts, labels)
    assert flipped.classes_ == ["sweet", "savory"]
    assert flipped.predict(held) == clf.predict(held)
    # the cached pretrained model was copied, not fine-tuned in place
    frozen = HFTextEncoder(model_dir, **FAST).base_model
    assert clf.model is not frozen and not any(p.requires_grad for p in frozen.parameters())


def test_classifier_is_seeded(gpt2_dir):
    texts, labels = toy(16, seed=3)
    options = {**CLF, "epochs": 2, "dropout": 0.1}
    a = HFTextEncoder(gpt2_dir, seed=5, **options).fit(texts, labels).predict_logits(texts[:4])
    b = HFTextEncoder(gpt2_dir, seed=5, **options).fit(texts, labels).predict_logits(texts[:4])
    c = HFTextEncoder(gpt2_dir, seed=6, **options).fit(texts, labels).predict_logits(texts[:4])
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_multilabel_classifier_and_probe(model_dir):
    # each text carries the words of one or both classes; labels are lists of class names
    rng = np.random.default_rng(4)
    texts, multi = [], []
    for i in range(24):
        row = [["sweet"], ["savory"], ["savory", "sweet"]][i % 3]
        words = [w for c in row for w in rng.choice(WORDS[c], 2, replace=False)] + [rng.choice(FILLER)]
        texts.append(" ".join(rng.permutation(words)))
        multi.append(row)
    clf = HFTextEncoder(model_dir, **{**CLF, "epochs": 12}).fit(texts, multi)
    assert clf.multilabel_ and clf.classes_ == ["savory", "sweet"]
    logits = clf.predict_logits(texts)
    assert logits.shape == (24, 2)
    truth = np.array([[c in row for c in clf.classes_] for row in multi])
    assert ((logits > 0) == truth).mean() >= 0.9
    assert clf.predict(texts[:3]) == [["sweet"], ["savory"], ["savory", "sweet"]]
    probe = HFTextEncoder(model_dir, C=100.0, **FAST).fit(texts, multi)
    assert probe.predict_logits(texts).shape == (24, 2) and probe.multilabel_


def test_out_of_fold_stacking_both_modes(gpt2_dir, bert_dir):
    texts, labels = toy(24, seed=5)
    # classifier: every fold fine-tunes its own copy; a row's logits come from a model that never saw it
    oof = out_of_fold_logits(f"hf:{gpt2_dir}", texts, labels, folds=3, seed=0, **CLF)
    assert oof.shape == (24, 2) and np.isfinite(oof).all()
    classes = sorted(set(labels))
    assert np.mean(np.array(classes)[oof.argmax(1)] == np.array(labels)) >= 0.8
    # features mode: texts are embedded once and only the probe is refitted per fold
    calls = []
    real_embed = HFEmbedder.embed

    def counting_embed(self, t):
        calls.append(len(t))
        return real_embed(self, t)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HFEmbedder, "embed", counting_embed)
        oof_probe = out_of_fold_logits(f"hf:{bert_dir}", texts, labels, folds=3, seed=0, C=100.0, **FAST)
    assert calls == [24] and oof_probe.shape == (24, 2)


def test_compute_text_features_on_a_dataset(tmp_path, gpt2_dir):
    texts, labels = toy(30, seed=6)
    recs = [Record(f"r{i}", tmp_path / f"{i}.jpg", t, c) for i, (t, c) in enumerate(zip(texts, labels))]
    ds = Dataset(name="toy", classes=["savory", "sweet"], splits={"train": recs[:18], "val": recs[18:24],
                                                                  "test": recs[24:]})  # fmt: skip
    feats, enc = compute_text_features(ds, f"hf:{gpt2_dir}", folds=3, seed=0, **CLF)
    assert feats.kind == "logits" and feats.out_of_fold and feats.values["train"].shape == (18, 2)
    val_ids = ds.ids("val")[::-1]
    assert np.allclose(feats.lookup("val", val_ids), enc.predict_logits([r.text for r in recs[18:24]][::-1]))
    emb, _ = compute_text_features(ds, f"hf:{gpt2_dir}", folds=3, seed=0, **FAST)
    assert emb.kind == "embedding" and emb.values["test"].shape == (6, 32)


def test_encoder_decoder_uses_its_encoder(tmp_path):
    from transformers import PreTrainedTokenizerFast, T5Config, T5Model

    tok, vocab = _word_level(bert=False)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        tmp_path
    )
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(vocab), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, pad_token_id=0,
        decoder_start_token_id=0,
    )  # fmt: skip
    T5Model(config).save_pretrained(tmp_path)
    enc = HFTextEncoder(str(tmp_path), **FAST)
    x = enc.transform(["apple pie", "garlic steak with onion"])
    assert x.shape == (2, 32) and np.isfinite(x).all() and enc.pooling == "mean"
