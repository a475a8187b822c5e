"""Data layer: readers for UPMC Food-101, FPUS23 and CSV/JSONL manifests, plus the synthetic default."""

from mmkit.data.records import (
    SPLITS,
    DataError,
    Dataset,
    ErrorPolicy,
    Record,
    Skipped,
    grouped_split,
    stratified_split,
)

__all__ = [
    "SPLITS",
    "DataError",
    "Dataset",
    "ErrorPolicy",
    "Record",
    "Skipped",
    "grouped_split",
    "stratified_split",
]
