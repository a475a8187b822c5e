"""The trained multimodal model as an artefact: text encoders saved and reloaded in safe formats, the saved
model predicting exactly what the experiment predicted, and the `mmkit predict` command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmkit.text import make_text_encoder
from mmkit.text_io import load_text_encoder, save_text_encoder

TEXTS = ["red apple pie", "green pear tart", "apple crumble", "pear juice", "baked apple", "pear salad"]
LABELS = ["apple", "pear", "apple", "pear", "apple", "pear"]
NEW = ["apple tart", "pear pie", "something else entirely", ""]


def _roundtrip(enc, tmp_path):
    folder = save_text_encoder(enc, tmp_path / "enc")
    with np.load(folder / "text_encoder.npz", allow_pickle=False) as z:  # no pickled object inside
        assert all(z[k].dtype != object for k in z.files)
    return load_text_encoder(folder)


@pytest.mark.parametrize(
    "name, options, labels",
    [
        ("tfidf", {}, LABELS),
        ("tfidf", {}, [["apple"], ["pear"], ["apple", "pie"], ["pear"], ["apple"], ["pear", "pie"]]),
        ("bow-mlp", {"epochs": 3, "seed": 1}, LABELS),
        ("open_clip:mmkit-tiny-vit", {"seed": 2}, LABELS),
    ],
)
def test_text_encoder_save_load_predicts_identically(name, options, labels, tmp_path):
    enc = make_text_encoder(name, **options).fit(TEXTS, labels)
    again = _roundtrip(enc, tmp_path)
    assert again.classes_ == enc.classes_ and again.multilabel_ == enc.multilabel_
    assert np.array_equal(again.predict_logits(NEW), enc.predict_logits(NEW))
    assert np.array_equal(again.transform(NEW), enc.transform(NEW))


def test_minilm_saves_a_reference_and_its_probe(tmp_path):
    enc = make_text_encoder("minilm").fit(TEXTS, LABELS)
    again = _roundtrip(enc, tmp_path)
    assert np.array_equal(again.predict_logits(NEW), enc.predict_logits(NEW))
    header = json.loads((tmp_path / "enc" / "text_encoder.json").read_text())
    assert header["reference"]["path"] == enc.path
    assert (tmp_path / "enc" / "text_encoder.npz").stat().st_size < 100_000  # the model is not copied


def test_text_encoder_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="text_encoder.json is missing"):
        load_text_encoder(tmp_path)
    with pytest.raises(RuntimeError, match="call fit"):
        save_text_encoder(make_text_encoder("tfidf"), tmp_path / "x")
