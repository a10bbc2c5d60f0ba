"""A plain FastAPI + scikit-learn text classifier server, as one would write it by hand: the baseline of
benchmarks/serve_text.py. A TF-IDF pipeline (word 1-2 grams and char_wb 2-4 grams, a FeatureUnion) with a logistic
regression, pickled with joblib; POST /predict {"text": "..."} -> {"label": ..., "probabilities": {...}}.

    MODEL_DIR=pipeline.joblib uvicorn _fastapi_text_server:app      (serve_text.py starts it this way)
"""
import os

import joblib
from fastapi import FastAPI
from pydantic import BaseModel
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline


def build_pipeline() -> Pipeline:
    features = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)),
    ])
    return Pipeline([("tfidf", features), ("clf", LogisticRegression(max_iter=1000, class_weight="balanced"))])


class Item(BaseModel):
    text: str


app = FastAPI()
model = joblib.load(os.environ["MODEL_DIR"]) if "MODEL_DIR" in os.environ else None


@app.post("/predict")
def predict(item: Item):
    probs = model.predict_proba([item.text])[0]
    classes = [str(c) for c in model.classes_]
    best = int(probs.argmax())
    return {"label": classes[best], "probabilities": dict(zip(classes, probs.tolist()))}
