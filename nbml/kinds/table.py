"""Table rows: each item is one row, stored in the project as JSON with its types (numbers, booleans, text, dates as
ISO text, missing as null); the project keeps its columns and their types. Three models train on the same rows in
one call: fastai's `TabularModel` (what `tabular_learner` builds: categorical embeddings, batch-normalised numbers,
layers of 200 and 100), LightGBM's gradient-boosted trees and a logistic regression, each fitted on the train split.
The best is kept: on up to `CV_MAX_ROWS` labelled rows by 5-fold cross-validation over all of them (a validation split
of a few dozen rows picks by chance), above that by the validation split (`arch="tabular"`, `"lightgbm"` or
`"linear"` forces one). What rows become as arrays is in `table_encoding` (numpy only), which the server shares.

The face of the table kind (what `nbml.kinds.get("table")` gives): every member of `nbml.kinds.base.Kind`, from
table_columns.py (ingest, columns, what the grid shows), table_model.py (the three models, the data-centric loop,
a model's inputs) and table_export.py (ONNX, its check, Triton, the model card).
"""
from __future__ import annotations

from .table_columns import (ARCHS, NAME, add, add_logged, add_table, card_text, column_order,  # noqa: F401
                            column_stats, columns_of, item_stats, read_chars, row_text, usable, use_columns)
from .table_export import (QUANTIZE_REFUSED, SERVE_REQUIREMENTS, card, check_feeds, export_config,  # noqa: F401
                           onnx_graph, triton_entry)
from .table_model import (NEAR_EMBEDDING, QUERY_WORDS, SURFACE_COLUMN, SURFACE_ONLY, SURFACE_THRESHOLD,  # noqa: F401
                          SURFACE_WORDS, compute, config, finish, fit_and_score, forecast_rho, head_model,
                          item_probs, load_net, make_learner, model_probs, plan, predict_probs, pretrained_backbone,
                          query, save_extra, surface, surface_probs)

UNIT = "columns"
NOUN = "row"
CARD = "text"        # a row is shown as a card of `column: value` lines
READ_LIMIT = None
refits = refit_on_all = None       # trained once: its model choice already reads every labelled row
batch_probs = None                 # served by ONNX Runtime only
quantize = None                    # QUANTIZE_REFUSED says why
load_extra = None                  # save_extra's trees are read by load_net
recommended_backbones = None       # a table's own standardised columns: nothing to choose
