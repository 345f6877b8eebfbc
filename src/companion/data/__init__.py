"""Data for every chapter, all offline: corpora that ship with Python, and seeded synthetic worlds."""

from .corpora import python_docs, python_docs_paragraphs, stdlib_code
from .parallel import parallel_passage, passage_scripts
from .tabular import digits, noisy_labels
from .synthetic import RequestTrace, make_fraud, request_trace, train_val_test_split

__all__ = ["python_docs", "python_docs_paragraphs", "stdlib_code", "parallel_passage", "passage_scripts", "digits", "noisy_labels", "make_fraud", "train_val_test_split",
           "RequestTrace", "request_trace"]
