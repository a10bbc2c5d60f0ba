"""A plain FastAPI + sentence-transformers + scikit-learn text classifier server, as one would write it by hand: the
encoder baseline of benchmarks/serve_text.py (`--model encoder`). MODEL_DIR holds `encoder/` (a sentence-transformers
folder) and `head.joblib` (a LogisticRegression on its embeddings); POST /predict {"text": "..."} ->
{"label": ..., "probabilities": {...}}. Needs `pip install --no-deps sentence-transformers` (not an nbml dependency).

    MODEL_DIR=folder uvicorn _fastapi_st_server:app      (serve_text.py starts it this way)
"""
import os

import joblib
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

app = FastAPI()
folder = os.environ.get("MODEL_DIR")
encoder = SentenceTransformer(os.path.join(folder, "encoder"), device="cpu") if folder else None
head = joblib.load(os.path.join(folder, "head.joblib")) if folder else None


class Item(BaseModel):
    text: str


@app.post("/predict")
def predict(item: Item):
    probs = head.predict_proba(encoder.encode([item.text]))[0]
    classes = [str(c) for c in head.classes_]
    best = int(probs.argmax())
    return {"label": classes[best], "probabilities": dict(zip(classes, probs.tolist()))}
