"""What nbml.export asks of the text kind: the ONNX graph is what follows tokenisation (the four arrays of
`text_encoding.encode` in, probabilities out), its check, the artifact's config, Triton's entry and the model card.
The server never imports this module (pandas): its half is nbml/kinds/text_serving.py, on `text_encoding` alone.
Part of the text kind (nbml.kinds.text, its face)."""
from __future__ import annotations

from .base import ONNX_OUTPUT
from .text_encoding import INPUT_NAMES, buckets_of, encode
from .text_model import model_tokenizer

CHECK_TEXTS = 256                 # validation texts the ONNX graph is compared with torch on at export
SAMPLE_TEXTS = ("Hello, how are you today?", "WINNER!! Claim your free prize now: call 0800 123 456",
                "ok", "Ça va ? 🙂 Ünïcödé, numbers 12345 and a   longer sentence " * 12)
PREPROCESSING_TEXT = {
    "decode": "UTF-8 text",
    "tokens": "tokenizer.json (WordLlama's), no special tokens, the first `max_tokens` token ids -> `ids` int64 "
              "[N, L] zero-padded, `mask` float32 [N, L] (1 on real tokens)",
    "n-grams": "scikit-learn HashingVectorizer on the first max_tokens * 8 characters, lowercased: word 1-2 grams "
               "(`word_buckets` buckets) then character 2-4 grams within words (`char_buckets`), raw counts -> "
               "`gram_ids` int64 [N, M] and `gram_counts` float32 [N, M], zero-padded; with `open_buckets`, also "
               "the text's opening words, `opening_words` of them ('^how', '^how many'), hashed into the last "
               "`open_buckets` buckets",
    "reference": "nbml.kinds.text_encoding.encode(texts, max_tokens, tokenizer, buckets_of(config)) makes all "
                 "four (numpy, tokenizers, scikit-learn; no torch)",
    "weighting": "inside the ONNX graph: TF-IDF (idf 1 for the opening words) and per-block unit length of the "
                 "n-grams, mean of the token vectors",
    "output": "softmax probabilities [N, len(classes)], in the order of `classes`",
}
SERVE_REQUIREMENTS = (("tokenizers", "0.15"), ("scikit-learn", "1.3"), ("scipy", "1.10"))


def _encoder(model):
    """text_setfit_export for a sentence-encoder model, else None (nbml's static model: this module)."""
    from .text_setfit import is_encoder_config
    if is_encoder_config(model.config):
        from . import text_setfit_export
        return text_setfit_export
    return None


def onnx_graph(model, net) -> dict:
    """The module to export (float32 `net` on the CPU inside, softmax after it), a sample input, names and axes."""
    import torch
    if (enc := _encoder(model)) is not None:
        return enc.onnx_graph(model, net)

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, ids, mask, gram_ids, gram_counts):
            return torch.softmax(self.net(ids, mask, gram_ids, gram_counts), dim=1)

    sample = encode(list(SAMPLE_TEXTS[:2]), model.size, model_tokenizer(model), buckets_of(model.config))
    axes = {"ids": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"},
            "gram_ids": {0: "batch", 1: "grams"}, "gram_counts": {0: "batch", 1: "grams"}}
    # TorchScript first: it exports this graph in under a second where torch.export takes ten and warns
    return dict(wrapper=Probabilities().eval(), sample=tuple(torch.from_numpy(sample[k]) for k in INPUT_NAMES),
                inputs=list(INPUT_NAMES), output=ONNX_OUTPUT, dynamic=axes, exporters=("torchscript", "torch.export"))


def check_texts(model, limit: int = CHECK_TEXTS) -> tuple[list[str], str]:
    """The project's validation texts (at most `limit`, a fixed sample), or sample texts without a project."""
    from .export_parts import validation_sample
    texts = validation_sample(model, limit, lambda frame: [t for t in frame["content"].tolist()
                                                           if isinstance(t, str) and t.strip()])
    if texts:
        return texts, f"{len(texts)} validation texts"
    return list(SAMPLE_TEXTS), f"{len(SAMPLE_TEXTS)} sample texts (no project with validation texts)"


def check_feeds(model, size: int | None = None) -> tuple[list[dict], str]:
    """What the ONNX graph is compared with torch on at export: the validation texts one alone, then in batches."""
    texts, described = check_texts(model)
    if (enc := _encoder(model)) is not None:
        return enc.check_feeds(model, texts, described)
    tok = model_tokenizer(model)
    buckets = buckets_of(model.config)
    feeds = [encode(texts[:1], model.size, tok, buckets)]
    feeds += [encode(texts[i:i + 64], model.size, tok, buckets) for i in range(0, len(texts), 64)]
    return feeds, described


def export_config(model) -> dict:
    if (enc := _encoder(model)) is not None:
        return enc.export_config(model)
    return {"preprocessing": PREPROCESSING_TEXT, "tokenizer": "tokenizer.json",
            "max_tokens": int(model.config.get("max_tokens", model.size))}


QUANTIZE_REFUSED = None     # a sentence encoder's graph quantises; the static model's refuses (quantize)


def quantize(model, float_onnx, int8_onnx, **kw) -> dict:
    """int8 for a sentence-encoder model (text_setfit_export.quantize); ValueError for the static model."""
    if (enc := _encoder(model)) is not None:
        return enc.quantize(model, float_onnx, int8_onnx, **kw)
    raise ValueError("int8 is not offered for nbml's static text model: its graph is mostly table look-ups, which "
                     "int8 would not speed up. Export without quantize=, or train the default sentence encoder")


def _encoder_config(config: dict):
    from .text_setfit import is_encoder_config
    if is_encoder_config(config):
        from . import text_setfit_export
        return text_setfit_export
    return None


def triton_entry(config: dict) -> dict[str, str]:
    """Triton's entry runs the ONNX graph on the four encoded arrays; a BYTES text input cannot go into ONNX, so a
    tokenising front end (the client, or a Python-backend model in an ensemble) must call `encode` first."""
    if (enc := _encoder_config(config)) is not None:
        return enc.triton_entry(config)
    from .export_parts import triton_arrays_config
    return triton_arrays_config(config, [(n, "TYPE_INT64" if n.endswith("ids") else "TYPE_FP32") for n in INPUT_NAMES],
                                ONNX_OUTPUT)


def card(config: dict) -> dict:
    """The model card's kind-specific parts (see nbml.export.model_card)."""
    if (enc := _encoder_config(config)) is not None:
        return enc.card(config)
    n, name, onnx = len(config["classes"]), config["name"], config["onnx"]
    check = onnx["check"]
    return dict(
        summary=f"A text classifier made with nbml {config['exported_with']}: `{config['arch']}` (WordLlama's "
                f"static token embedding, mean-pooled, plus TF-IDF-weighted hashed word and character n-grams"
                f"{' and the opening words' if config.get('open_buckets') else ''}, a linear head), {n} classes; it "
                f"reads the first {config.get('max_tokens', config['size'])} tokens "
                f"of a text.",
        input=[f"- {k}: {v}" for k, v in config["preprocessing"].items()],
        onnx_file=f"- `model.onnx` (float32): inputs {', '.join(f'`{k}`' for k in INPUT_NAMES)} as above, output "
                  f"`{ONNX_OUTPUT}` float32 [N, {n}]; checked at export against torch (largest difference "
                  f"{check['max_abs_diff']:.1e}, tolerance {check['tolerance']:.0e}, on {check['described']})",
        extra_files=["- `tokenizer.json`: the tokenizer, as JSON (no pickle)"],
        try_it=("curl -H 'Content-Type: application/json' -d '{\"text\": \"hello there\"}' "
                "http://127.0.0.1:8000/predict"),
        serving=['nbml\'s server takes `{"text": "..."}` or `{"texts": ["...", ...]}` (JSON) or a `text/plain` '
                 f"body on `POST /predict`, and a BYTES input `text` (UTF-8) on the Open Inference Protocol "
                 f"(`POST /v2/models/{name}/infer`); it tokenises and hashes the texts itself.", "",
                 "Triton (or KServe with the Triton runtime) runs the ONNX model, which takes the four encoded arrays, "
                 "not text: a BYTES input cannot go into the ONNX graph, so Triton needs a tokenising front end. "
                 "Point it at `triton/` and call `nbml.kinds.text_encoding.encode(texts, max_tokens, "
                 "tokenizer(tokenizer.json), buckets_of(config))` in the client, or put a Python-backend model "
                 f"that does it in front as a Triton ensemble. Its output `{ONNX_OUTPUT}` is already softmaxed."],
        limits=[f"- The model always answers one of its {n} classes, even for a text about something else; a low "
                "confidence is the only sign. Look at low-confidence inputs (`nbml.monitor`, `ds.add_from_log`).",
                f"- It reads only the first {config.get('max_tokens', config['size'])} tokens of a text (and n-grams "
                "of its first characters); other languages, topics or styles than its training data's can lower "
                "accuracy without warning. The metrics above come from the validation split of the same data"
                + (f"; the model was then trained again on all {config['refit_on_all']} labelled texts, validation "
                   "included, so it has seen more than the model those figures measured." if config.get("refit_on_all")
                   else ".")
                + (f" {config['advice']}" if config.get("advice") else "")
                + (f" Its head also learnt from {config['self_trained']} unlabelled texts of the project, labelled "
                   "with its own most confident predictions (self-training)." if config.get("self_trained") else "")])
