"""The trained multimodal model as an artefact: text encoders saved and reloaded in safe formats, the saved
model predicting exactly what the experiment predicted, and the `mmkit predict` command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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


# ------------------------------------------------------------------------------------------ saved model
from mmkit.config import AugmentConfig, FusionConfig, ModelConfig, TextConfig, TrainConfig  # noqa: E402
from mmkit.data import make_synthetic_food101, read_upmc_food101  # noqa: E402


@pytest.fixture(scope="module")
def food(tmp_path_factory):
    root = make_synthetic_food101(
        tmp_path_factory.mktemp("food"), n_classes=3, train_per_class=8, test_per_class=4, image_size=32
    )
    return read_upmc_food101(root, val_fraction=0.25, seed=0)


AUG = AugmentConfig(image_size=32, batch_size=8, copies=2, preset="light")


@pytest.fixture(scope="module")
def stage1(food, tmp_path_factory):
    from mmkit.train import train_stage1

    out = tmp_path_factory.mktemp("s1")
    return train_stage1(
        food, ModelConfig("timm:test_resnet"), TrainConfig(epochs=1, lr=0.05), AUG, out_dir=out
    )


def _experiment(food, tmp_path, **fusion_kw):
    from mmkit.experiment import run_fusion_experiment

    fusion = FusionConfig(bank_views=2, bank_dir=str(tmp_path / "bank"), compare_heads=False, **fusion_kw)
    model = ModelConfig(backbone=None if fusion.checkpoint else "timm:test_resnet", train_blocks="last:1")
    return run_fusion_experiment(
        food, augment=AUG, model=model, train=TrainConfig(epochs=2, lr=1e-2, optimizer="adamw"),
        text=TextConfig(text_folds=3), fusion=fusion, out_dir=tmp_path / "run",
    )  # fmt: skip


def _test_logits(exp):
    from mmkit.stage2 import predict

    main = exp.results[exp.main]
    logits, _, _ = predict(main.model, main.loaders["test"])
    return logits


def _check_roundtrip(exp, food, tmp_path):
    from mmkit.model import dataset_predictions, load_model, save_model
    from mmkit.run import main as cli

    folder = save_model(exp, tmp_path / "run" / "model")
    expected = _test_logits(exp)
    nb_csv = dataset_predictions(tmp_path / "run" / "predictions_test.csv", food, "test", expected)
    model = load_model(folder)
    recs = food.records("test")
    images, texts = [r.image_path for r in recs], [r.text for r in recs]
    assert np.array_equal(model.predict_logits(images, texts), expected)  # bit for bit, on the CPU
    probs = model.predict(images, texts)
    assert probs.shape == (len(recs), len(food.classes)) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    # a missing modality is substituted as in training: the same as the experiment's no-image condition
    from mmkit.stage2 import predict

    main = exp.results[exp.main]
    no_image, _, _ = predict(main.model, main.loaders["test"], drop="image")
    assert np.allclose(model.predict_logits(None, texts), no_image, atol=1e-5)
    # the command line on a manifest of the same rows writes the same predictions
    import pandas as pd

    manifest = tmp_path / "inputs.csv"
    raw = [r.meta["raw_title"] for r in recs]  # the titles as the dataset gives them: predict cleans them
    assert raw != texts
    pd.DataFrame({"id": [r.id for r in recs], "image": [str(p) for p in images], "text": raw}).to_csv(
        manifest, index=False
    )
    assert cli(["predict", str(folder), "--manifest", str(manifest), "--out", str(tmp_path / "p.csv")]) == 0
    ours, theirs = pd.read_csv(tmp_path / "p.csv"), pd.read_csv(nb_csv)
    assert list(ours.columns) == ["id", "pred"] + [f"p_{c}" for c in food.classes]
    assert list(theirs.columns) == ["id", "label", "pred"] + [f"p_{c}" for c in food.classes]
    assert ours["id"].astype(str).tolist() == theirs["id"].astype(str).tolist()
    assert ours["pred"].tolist() == theirs["pred"].tolist()
    cols = [f"p_{c}" for c in food.classes]
    assert np.array_equal(ours[cols].to_numpy(np.float32), theirs[cols].to_numpy(np.float32))
    assert np.array_equal(theirs[cols].to_numpy(np.float32), probs)  # 9 digits: the same float32 values
    return folder


def test_saved_model_over_a_stage1_checkpoint_predicts_like_the_experiment(food, stage1, tmp_path):
    exp = _experiment(food, tmp_path, checkpoint=str(stage1.checkpoint))
    folder = _check_roundtrip(exp, food, tmp_path)
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["backbone"]["kind"] == "weights"  # the default: the folder is the unit
    assert (folder / "backbone.pt").is_file()
    assert (
        manifest["preprocess"]["preset"] == "light" and manifest["preprocess"]["feature_dtype"] == "float16"
    )
    assert manifest["preprocess"]["norm"] == torch.load(stage1.checkpoint, weights_only=True)["meta"]["norm"]
    from mmkit.model import load_model, save_model

    ref = save_model(exp, tmp_path / "ref", backbone="reference")  # the explicit option: path + hash
    assert json.loads((ref / "model.json").read_text())["backbone"]["kind"] == "stage1_checkpoint"
    assert not (ref / "backbone.pt").exists()
    recs = food.records("test")
    images, texts = [r.image_path for r in recs], [r.text for r in recs]
    assert np.array_equal(load_model(ref).predict_logits(images, texts), _test_logits(exp))


def test_a_copied_model_folder_outlives_its_checkpoint_and_preset_file(food, tmp_path):
    import dataclasses
    import shutil

    from mmkit.augment import save_preset
    from mmkit.experiment import run_fusion_experiment
    from mmkit.model import load_model, save_model
    from mmkit.train import train_stage1

    preset = save_preset("light", tmp_path / "my_preset.json", image_size=32, scale_min=0.5)
    augment = dataclasses.replace(AUG, preset=str(preset))
    checkpoint = train_stage1(
        food,
        ModelConfig("timm:test_resnet"),
        TrainConfig(epochs=1, lr=0.05),
        augment,
        out_dir=tmp_path / "s1",
    ).checkpoint
    exp = run_fusion_experiment(
        food, augment=augment, model=ModelConfig(backbone=None),
        train=TrainConfig(epochs=2, lr=1e-2, optimizer="adamw"), text=TextConfig(text_folds=3),
        fusion=FusionConfig(bank_views=2, bank_dir=str(tmp_path / "bank"), compare_heads=False,
                            checkpoint=str(checkpoint)),
        out_dir=tmp_path / "run",
    )  # fmt: skip
    expected = _test_logits(exp)
    saved = save_model(exp, tmp_path / "run" / "model")
    assert (saved / "preset.json").is_file()
    moved = shutil.copytree(saved, tmp_path / "elsewhere" / "model")
    shutil.rmtree(saved)
    Path(checkpoint).unlink()  # notebook 03 run again: the checkpoint is gone, and so is the preset file
    preset.unlink()
    recs = food.records("test")
    model = load_model(moved)
    assert np.array_equal(
        model.predict_logits([r.image_path for r in recs], [r.text for r in recs]), expected
    )
    assert model.preprocess["preset"].params["scale_min"] == 0.5
    manifest = json.loads((moved / "model.json").read_text())
    assert "preset.json" in manifest["files"]  # hashed with the others, so an edited copy is caught
    edited = shutil.copytree(moved, tmp_path / "edited")
    (edited / "preset.json").write_text((edited / "preset.json").read_text().replace("0.5", "0.25"))
    with pytest.raises(ValueError, match="preset.json changed since the model was saved"):
        load_model(edited)
    again = load_model(save_model(model, tmp_path / "again"))  # a loaded model saves whole again
    assert np.array_equal(
        again.predict_logits([r.image_path for r in recs], [r.text for r in recs]), expected
    )


def test_saved_live_model_carries_its_trained_backbone(food, tmp_path):
    exp = _experiment(food, tmp_path, feature_bank=False)
    folder = _check_roundtrip(exp, food, tmp_path)
    assert json.loads((folder / "model.json").read_text())["backbone"]["kind"] == "weights"


def test_load_model_refuses_other_major_versions_and_missing_files(food, tmp_path):
    from mmkit.model import load_model, save_model

    folder = save_model(_experiment(food, tmp_path), tmp_path / "model")  # random init: weights copied
    assert (folder / "backbone.pt").is_file()
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "mmkit_version": "99.0.0"}))
    with pytest.raises(ValueError, match="saved by mmkit 99.0.0.*another major version"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps(manifest))
    (folder / "fusion.pt").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: fusion.pt missing"):
        load_model(folder)
    with pytest.raises(FileNotFoundError, match="model.json is missing"):
        load_model(tmp_path / "nothing")


def test_multilabel_model_gives_per_label_probabilities(tmp_path, monkeypatch):
    monkeypatch.delenv("MMKIT_CACHE", raising=False)
    from mmkit.data import make_synthetic_fpus23, read_fpus23
    from mmkit.experiment import run_fusion_experiment
    from mmkit.model import load_model, save_model

    root = make_synthetic_fpus23(tmp_path / "fpus", n_streams=8, frames_per_stream=6, width=48, height=32)
    ds = read_fpus23(root, task="organs")
    exp = run_fusion_experiment(
        ds, augment=AugmentConfig(image_size=32, batch_size=8, copies=1), model=ModelConfig("timm:test_resnet"),
        train=TrainConfig(epochs=2, lr=1e-2, optimizer="adamw"), text=TextConfig(text_folds=3),
        fusion=FusionConfig(head="late", bank_views=1, compare_heads=False), out_dir=tmp_path / "run",
    )  # fmt: skip
    model = load_model(save_model(exp, tmp_path / "model"))
    recs = ds.records("test")
    logits = _test_logits(exp)
    probs = model.predict([r.image_path for r in recs], [r.text for r in recs])
    assert model.task == "multilabel" and probs.shape == (len(recs), len(ds.classes))
    assert np.array_equal(probs, torch.sigmoid(torch.from_numpy(logits)).numpy())  # one sigmoid per label
    assert (tmp_path / "run" / "feature_bank").is_dir()  # the bank defaults under out_dir


def test_read_inputs_keeps_id_0_and_numbers_rows_without_an_id_from_1(tmp_path):
    from PIL import Image

    from mmkit.model import clean_texts, read_inputs

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [
        {"id": 0, "image": "a.png", "text": "x"},
        {"image": "a.png", "text": "y"},
        {"id": "", "img": "a.png", "text": "z"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ids, images, texts = read_inputs(tmp_path / "m.jsonl")
    assert ids == ["0", "2", "3"] and texts == ["x", "y", "z"]
    assert clean_texts(["a  b\n c"], "whitespace") == ["a b c"]
    assert clean_texts(["Mom&amp;s  pie"], "food101_title") == ["Mom&s pie"]


def test_a_model_without_a_backbone_is_refused_up_front():
    from mmkit.model import MultimodalModel

    with pytest.raises(ValueError, match="needs its image backbone.*modalities='text'"):
        MultimodalModel(None, None, torch.nn.Identity(), ["a"], "multiclass", {}, "late")
