"""Texts: held in the store (the item's `content`), read through a tokenizer and hashed n-grams, and strings on the
wire. The face of the text kind (what `nbml.kinds.get("text")` gives): every member of `nbml.kinds.base.Kind`, from

    text_ingest.py    what ds.add_texts takes and refuses, what training can read, what the grid shows
    text_model.py     the training plan, nbml's static network (WordLlama's embedding + TF-IDF n-grams, the fallback),
                      its closed-form head, the data-centric loop's features, a model's inputs
    text_setfit.py    the default model when a sentence encoder can be had: the encoder fine-tuned on pairs of the
                      labelled texts, then a logistic head (text_model dispatches to it)
    text_encoder.py   where an encoder comes from, the pair learner, its ONNX export (text_encoder_runtime: the
                      torch-free half the server uses)
    text_export.py    the ONNX graph, its check, the artifact's config, Triton's entry, the model card
    text_encoding.py  tokens and hashed n-grams in numpy (shared with the server's half, text_serving.py)
"""
from __future__ import annotations

from .text_encoding import MAX_TOKENS  # noqa: F401
from .text_export import (QUANTIZE_REFUSED, SERVE_REQUIREMENTS, card, check_feeds, export_config,  # noqa: F401
                          onnx_graph, quantize, triton_entry)
from .text_ingest import (CARD, NAME, NOUN, READ_LIMIT, UNIT, add, add_logged, add_texts, card_text,  # noqa: F401
                          check_input, item_stats, read_chars, usable)
from .text_model import (QUERY_WORDS, SURFACE_COLUMN, SURFACE_ONLY, SURFACE_THRESHOLD, SURFACE_WORDS,  # noqa: F401
                         compute, config, finish, fit_and_score, forecast_rho, head_model, item_probs, load_extra,
                         load_net, make_learner,
                         model_probs, plan, predict_probs, pretrained_backbone, probs, query, recommended_backbones,
                         refit_on_all, refits,
                         save_extra, surface, surface_probs)

NEAR_EMBEDDING = None    # nbml's default for pretrained embeddings
batch_probs = probs      # the server's torch runner: a batch of texts
