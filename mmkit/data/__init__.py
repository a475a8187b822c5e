"""Data layer: readers for UPMC Food-101, FPUS23, CSV/JSONL/Parquet manifests and Hugging Face datasets,
plus the synthetic default."""

from mmkit.data.checks import cross_split_duplicates
from mmkit.data.food101 import clean_title, read_upmc_food101
from mmkit.data.fpus23 import read_fpus23
from mmkit.data.hf import read_hf
from mmkit.data.load import dataset_stats, load_dataset
from mmkit.data.manifest import read_manifest
from mmkit.data.records import (
    SPLITS,
    DataError,
    Dataset,
    DataWarning,
    ErrorPolicy,
    Record,
    Skipped,
    grouped_split,
    stratified_split,
)
from mmkit.data.synthetic import make_synthetic_food101, make_synthetic_fpus23

__all__ = [
    "SPLITS",
    "DataError",
    "Dataset",
    "DataWarning",
    "cross_split_duplicates",
    "read_hf",
    "ErrorPolicy",
    "Record",
    "Skipped",
    "grouped_split",
    "stratified_split",
    "clean_title",
    "dataset_stats",
    "load_dataset",
    "make_synthetic_food101",
    "make_synthetic_fpus23",
    "read_fpus23",
    "read_manifest",
    "read_upmc_food101",
]
