"""Audio Needle In A Haystack metric, as an `evaluate` module.

Load it with `transformers_dass.load_niah_metric()` or `evaluate.load(<this folder>)` (no network needed). The
computation is `transformers_dass.evaluation.niah.metric.compute_niah_metrics`.
"""

import datasets
import evaluate
import numpy as np

from transformers_dass.evaluation.niah.metric import compute_niah_metrics

_CITATION = """\
@inproceedings{bhati2024dass,
  title={DASS: Distilled Audio State Space Models Are Stronger and More Duration-Scalable Learners},
  author={Bhati, Saurabhchand and Gong, Yuan and Karlinsky, Leonid and Kuehne, Hilde and Feris, Rogerio and Glass, James},
  booktitle={IEEE Spoken Language Technology Workshop (SLT)},
  year={2024}
}
"""

_DESCRIPTION = """\
Audio Needle In A Haystack (NIAH): a labelled clip (the needle) is placed at a relative position inside a long
haystack (zeros, white or babble noise) and the model tags the whole sequence. The metric scores the tags against
the needle's labels as AST's calculate_stats does: per-class average precision and ROC AUC, averaged over the
classes that have a positive needle (mAP, mAUC; classes left out are counted), and d' = sqrt(2) * Phi^-1(mAUC).
Given the haystack length, needle position and clip readout of each example, it also reports every
(length, position, readout) group.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (n, classes) scores per needle haystack, e.g. sigmoid probabilities.
    references: (n, classes) multi-hot labels (0/1) of the needles.
    haystack_seconds: optional, (n,) haystack length of each example, given to `compute`.
    needle_position: optional, (n,) relative needle position of each example, given to `compute`.
    clip_pooling: optional, (n,) clip readout of each example's scores ("mean", "max"), given to `compute`.
Returns:
    mAP, mAUC, d_prime, num_examples, num_classes, skipped_classes (no positive example),
    skipped_auc_classes (no positive or no negative example), and with the settings a `breakdown` list holding the
    same scores per (haystack_seconds, needle_position, clip_pooling).
Examples:
    >>> import transformers_dass
    >>> niah = transformers_dass.load_niah_metric()
    >>> niah.compute(predictions=[[0.9, 0.2], [0.1, 0.7]], references=[[1, 0], [0, 1]])["mAP"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Niah(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2407.04082"],
        )

    def _compute(self, predictions, references, haystack_seconds=None, needle_position=None, clip_pooling=None):
        return compute_niah_metrics(
            _rows(predictions, "predictions"),
            _rows(references, "references"),
            haystack_seconds=haystack_seconds,
            needle_position=needle_position,
            clip_pooling=clip_pooling,
        )


def _rows(rows, name):
    """The stored rows as one (n, classes) array; rows of different lengths are refused."""
    rows = [np.asarray(row, dtype=np.float64) for row in rows]
    if len({row.shape for row in rows}) > 1:
        raise ValueError(f"the rows of {name} have different lengths; every row must score the same classes")
    return np.stack(rows) if rows else np.zeros((0, 0))
