"""The audio Needle In A Haystack sweep (`scripts/run_niah.py` is its command line).

- `arguments`: `NiahArguments` (the settings), their checks, the sweep's points;
- `models`: DASS / AST classifiers and AST's position embeddings per length;
- `needles`: labelled clips from a dataset, parquet shards or a folder;
- `haystacks`: one needle's haystack (features spliced into zeros or noise, or audio mixed into a background
  whose features are computed once per length);
- `results`: resumable results.json / results.csv and the plot;
- `run`: `run_sweep`, one forward per haystack scoring every clip readout, out-of-memory points recorded.
"""

from .arguments import NiahArguments, Point, sweep_points
from .results import ResultStore, plot_results
from .run import run_sweep

__all__ = ["NiahArguments", "Point", "ResultStore", "plot_results", "run_sweep", "sweep_points"]
