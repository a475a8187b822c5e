"""The known defects, each as the smallest code change that puts it back, and the fast tests that must
catch it. ``make mutants`` (tests/run_mutants.py) applies each to a copy of mmkit and runs its tests: every
mutant must be killed. When code moves, update ``old`` so that it still puts the defect back; never delete
a mutant to make the check pass.
"""

from run_mutants import Mutant

MUTANTS = [
    Mutant(
        name="crossfit-backbone-trains-on-its-held-out-fold",
        file="mmkit/crossfit.py",
        old="sub = fold_dataset(dataset, np.flatnonzero(fold_of != k))",
        new="sub = fold_dataset(dataset, np.flatnonzero(fold_of == k))",
        tests=("tests/test_fusion.py::test_cross_fit_stage1_trains_each_fold_backbone_without_its_fold",),
    ),
    Mutant(
        name="crossfit-eval-rows-from-the-full-backbone",
        file="mmkit/crossfit.py",
        old="out[:, k] = bank.lookup(split, ids[split]) if ids[split]",
        new="out[:, k] = full_bank.lookup(split, ids[split]) if ids[split]",
        tests=("tests/test_fusion.py::test_cross_fitted_bank_uses_fold_backbones_only",),
    ),
    Mutant(
        name="bootstrap-resamples-test-rows-per-seed",
        file="mmkit/verdict.py",
        old="            dev[start:stop, s] = sa(w) - sb(w) - diffs[s]",
        new="            w = _row_weights(rows_rng, stop - start, n)\n            dev[start:stop, s] = sa(w) - sb(w) - diffs[s]",
        tests=("tests/test_verdict.py::test_the_95_interval_covers_a_true_zero_95_percent_of_the_time",),
    ),
    Mutant(
        name="image-standardisation-fitted-on-all-splits",
        file="mmkit/stage2.py",
        old='image_stats = _bank_stats(bank.features["train"])',
        new=(
            'image_stats = _bank_stats(np.concatenate([np.asarray(bank.features["train"]).reshape(-1, bank.dim)]'
            ' + [bank.plain[s] for s in ("val", "test")]))'
        ),
        tests=("tests/test_standardisation.py::test_feature_statistics_come_from_the_training_rows_only",),
    ),
    Mutant(
        name="text-standardisation-fitted-on-all-splits",
        file="mmkit/stage2.py",
        old='text_train = torch.from_numpy(text.lookup("train", dataset.ids("train")))',
        new=(
            "text_train = torch.from_numpy(np.concatenate("
            '[text.lookup(s, dataset.ids(s)) for s in ("train", "val", "test")]))'
        ),
        tests=("tests/test_standardisation.py::test_feature_statistics_come_from_the_training_rows_only",),
    ),
    Mutant(
        name="train-rows-get-in-sample-text-logits",
        file="mmkit/text.py",
        old="table.add(split, ids, oof)",
        new="table.add(split, ids, full.predict_logits(texts))",
        tests=(
            "tests/test_text_out_of_fold.py::test_training_rows_get_logits_from_models_that_never_saw_them",
        ),
    ),
    Mutant(
        name="out-of-fold-model-fits-every-row",
        file="mmkit/text.py",
        old="enc.fit([texts[i] for i in train_idx], y[train_idx])",
        new="enc.fit(texts, y)",
        tests=(
            "tests/test_text.py::test_out_of_fold_logits_never_use_their_own_row",
            "tests/test_text_out_of_fold.py::test_training_rows_get_logits_from_models_that_never_saw_them",
        ),
    ),
    Mutant(
        name="stage1-epoch-selected-on-test",
        file="mmkit/train.py",
        old='loaders["train"],\n        loaders["val"],\n        train_cfg,',
        new='loaders["train"],\n        loaders["test"],\n        train_cfg,',
        tests=("tests/test_selection_split.py::test_stage1_selects_its_epoch_on_the_validation_split",),
    ),
    Mutant(
        name="stage2-epoch-selected-on-test",
        file="mmkit/stage2.py",
        old='model, loaders["train"], loaders["val"], train,',
        new='model, loaders["train"], loaders["test"], train,',
        tests=("tests/test_selection_split.py::test_stage2_selects_its_epoch_on_the_validation_split",),
    ),
    Mutant(
        name="baseline-chosen-on-test",
        file="mmkit/verdict.py",
        old='col = f"val_{metric}"',
        new='col = f"test_{metric}"',
        tests=("tests/test_verdict.py::test_best_single_is_chosen_on_validation_not_test",),
    ),
    Mutant(
        name="stage1-checkpoint-from-another-split-accepted",
        file="mmkit/train.py",
        old="        check_split(meta, dataset, checkpoint)\n",
        new="",
        tests=("tests/test_train.py::test_restore_stage1_settings_fills_open_fields_and_refuses_conflicts",),
    ),
    Mutant(
        name="text-features-joined-by-position",
        file="mmkit/text.py",
        old="return self.values[split][[index[k] for k in ids]]",
        new="return self.values[split][: len(ids)]",
        tests=("tests/test_text.py::test_feature_table_joins_by_id_after_shuffling",),
    ),
    Mutant(
        name="first-row-of-headerless-titles-dropped",
        file="mmkit/data/food101.py",
        old='reader = csv.reader(io.StringIO(text, newline=""))',
        new='reader = csv.reader(io.StringIO(text, newline=""))\n    next(reader, None)  # "the header"',
        tests=("tests/test_food101.py::test_synthetic_rows_are_shuffled_but_joined_by_name",),
    ),
    Mutant(
        name="labels-shifted-by-one",
        file="mmkit/data/records.py",
        old="return np.array([index[r.label] for r in recs], dtype=np.int64)",
        new="return np.array([(index[r.label] + 1) % len(self.classes) for r in recs], dtype=np.int64)",
        tests=(
            "tests/test_labels.py::test_targets_index_each_records_own_class",
            "tests/test_labels.py::test_loader_labels_are_the_records_classes",
        ),
    ),
    Mutant(
        name="frozen-blocks-left-in-train-mode",
        file="mmkit/models.py",
        old="                if frozen:\n                    block.eval()",
        new="                if frozen:\n                    block.train()",
        tests=("tests/test_models.py::test_frozen_blocks_stay_eval_and_their_statistics_do_not_move",),
    ),
    Mutant(
        name="fpus23-split-by-frame-not-stream",
        file="mmkit/data/fpus23.py",
        old="records.append(Record(f\"{stream}/{f['name']}\", path, text, label, stream, meta))",
        new="records.append(Record(f\"{stream}/{f['name']}\", path, text, label, f\"{stream}/{f['name']}\", meta))",
        tests=("tests/test_fpus23.py::test_grouped_split_keeps_every_class_in_every_split",),
    ),
    Mutant(
        name="grouped-split-ignores-the-groups",
        file="mmkit/data/records.py",
        old="return r.group if r.group is not None else r.id",
        new="return r.id",
        tests=("tests/test_fpus23.py::test_grouped_split_keeps_every_class_in_every_split",),
    ),
    Mutant(
        name="bank-key-ignores-image-content",
        file="mmkit/features.py",
        old='h.update(f"{split}\\t{r.id}\\t{r.image_path}\\t{_stat(r.image_path)}\\n".encode())',
        new='h.update(f"{split}\\t{r.id}\\t{r.image_path}\\n".encode())',
        tests=("tests/test_features.py::test_bank_rebuilds_when_an_image_is_overwritten",),
    ),
    Mutant(
        name="decode-cache-ignores-a-rewritten-file",
        file="mmkit/augment.py",
        old="os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, min_size,",
        new="os.path.abspath(path), min_size,",
        tests=("tests/test_decode_cache.py::test_a_rewritten_file_is_decoded_again",),
    ),
]
