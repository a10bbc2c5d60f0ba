"""What nbml.export asks of a sentence-encoder text model (text_setfit): one ONNX graph from the encoder's token ids
and attention mask to the head's probabilities, its check, int8 (ONNX Runtime's dynamic quantisation, kept only
within `max_accuracy_drop` points of float32 on the validation texts), the artifact's config and the card's parts.
The server's half is text_serving (with text_encoder_runtime's tokenizer helpers): no torch, transformers,
scikit-learn or pandas. Part of the text kind; text_export dispatches here for encoder models."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ONNX_OUTPUT
from .text_encoder_runtime import INPUTS, pad_id, padded, token_ids

CHECK_TEXTS = 256
SAMPLES = ("Hello, how are you today?", "WINNER!! Claim your free prize now: call 0800 123 456")
INT8_METHOD = "ONNX Runtime dynamic quantisation: int8 weights per channel, activations quantised per batch"
PREPROCESSING = {
    "decode": "UTF-8 text",
    "tokens": "tokenizer.json (the encoder's, Hugging Face `tokenizers`), with its special tokens, cut to "
              "`max_tokens` -> `input_ids` int64 [N, L] padded with `pad_id`, `attention_mask` int64 [N, L] "
              "(1 on real tokens)",
    "reference": "nbml.kinds.text_encoder_runtime.token_ids(load_tokenizer('tokenizer.json'), texts, max_tokens) "
                 "then padded(ids, pad_id) (numpy and tokenizers only)",
    "model": "inside the ONNX graph: the encoder, mean pooling over the mask, L2 normalisation, the linear head",
    "output": "softmax probabilities [N, len(classes)], in the order of `classes`",
}
SERVE_REQUIREMENTS = (("tokenizers", "0.15"),)


def _tok(model):
    return model.net.tokenizer


def onnx_graph(model, net) -> dict:
    """The encoder (transformers' eager attention: plain matmuls that trace on every exporter) and the head, with a
    softmax, from (input_ids, attention_mask)."""
    import torch
    from .text_encoder import _eager_attention

    class Probabilities(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body, self.head = body, net.head

        def forward(self, input_ids, attention_mask):
            return torch.softmax(self.head(self.body(input_ids, attention_mask)), dim=1)

    tok = _tok(model)
    ids, mask = padded(token_ids(tok, list(SAMPLES), model.size), pad_id(tok))
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    # traced with eager attention, checked against the network as it predicts (its eager copy drifted from it by
    # up to 0.08 on texts of 86 tokens, where the exported graph matched the original to 2e-7)
    return dict(wrapper=Probabilities(_eager_attention(net.body)).eval(), reference=Probabilities(net.body).eval(),
                sample=(torch.from_numpy(ids), torch.from_numpy(mask)), inputs=list(INPUTS), output=ONNX_OUTPUT,
                dynamic=axes, exporters=("torchscript", "torch.export"))


def _feeds(model, texts: list[str], bs: int = 64) -> list[dict]:
    tok = _tok(model)
    seqs = token_ids(tok, texts, model.size)
    out = []
    for start in range(0, len(seqs), bs):
        ids, mask = padded(seqs[start:start + bs], pad_id(tok))
        out.append({INPUTS[0]: ids, INPUTS[1]: mask})
    return out


def check_feeds(model, texts: list[str], described: str) -> tuple[list[dict], str]:
    """The validation texts one alone, then in batches (padding included: the mask must hold)."""
    return _feeds(model, texts[:1]) + _feeds(model, texts), described


def _accuracy(path: Path, feeds: list[dict], targets: np.ndarray) -> float:
    from ..serving.runners import cpu_session
    session = cpu_session(path, None)
    preds = np.concatenate([session.run([ONNX_OUTPUT], f)[0].argmax(1) for f in feeds])
    return float((preds == targets).mean())


def quantize(model, float_onnx: Path, int8_onnx: Path, *, max_accuracy_drop: float, **_) -> dict:
    """int8 by ONNX Runtime's dynamic quantisation (no calibration), compared with float32 on the validation texts."""
    from .export_parts import validation_sample
    from .text_encoder import _quantize
    record = {"requested": "int8", "kept": False, "method": INT8_METHOD, "max_accuracy_drop_points": max_accuracy_drop}
    pairs = validation_sample(model, 100_000, lambda f: [(t, c) for t, c in zip(f["content"], f["label"])
                                                          if isinstance(t, str) and t.strip() and c in model.classes])
    if not pairs:
        return {**record, "reason": "the model has no project with labelled validation texts to check int8's "
                                    "accuracy on: load it with its project (nbml.load(folder, dataset=ds))"}
    texts = [t for t, _ in pairs]
    targets = np.array([model.classes.index(c) for _, c in pairs])
    _quantize(Path(float_onnx), Path(int8_onnx))
    feeds = _feeds(model, texts)
    float_acc, int8_acc = _accuracy(Path(float_onnx), feeds, targets), _accuracy(Path(int8_onnx), feeds, targets)
    drop = round((float_acc - int8_acc) * 100, 4)
    record.update(validation_items=len(texts), float32_accuracy=float_acc, int8_accuracy=int8_acc, drop_points=drop,
                  kept=drop <= max_accuracy_drop)
    if not record["kept"]:
        record["reason"] = f"int8 lost {drop:.2f} accuracy points, more than the {max_accuracy_drop:g} allowed"
    return record


def export_config(model) -> dict:
    return {"preprocessing": PREPROCESSING, "tokenizer": "encoder/tokenizer.json",
            "max_tokens": int(model.config.get("max_tokens", model.size)),
            "pad_id": int(model.config.get("pad_id", pad_id(_tok(model))))}


def triton_entry(config: dict) -> dict[str, str]:
    from .export_parts import triton_arrays_config
    return triton_arrays_config(config, [(n, "TYPE_INT64") for n in INPUTS], ONNX_OUTPUT)


def card(config: dict) -> dict:
    """The model card's kind-specific parts for an encoder model."""
    n, name, onnx = len(config["classes"]), config["name"], config["onnx"]
    check = onnx["check"]
    tokens = config.get("max_tokens", config["size"])
    return dict(
        summary=f"A text classifier made with nbml {config['exported_with']}: the sentence encoder "
                f"`{config['encoder']}` fine-tuned on {config.get('pairs', 0)} pairs of its labelled texts (SetFit's "
                f"method), then a logistic-regression head, {n} classes; it reads the first {tokens} tokens of a text.",
        input=[f"- {k}: {v}" for k, v in config["preprocessing"].items()],
        onnx_file=f"- `model.onnx` ({onnx.get('precision', 'float32')}): inputs `{INPUTS[0]}`, `{INPUTS[1]}` as "
                  f"above, output `{ONNX_OUTPUT}` float32 [N, {n}]; the float32 graph was checked at export against "
                  f"torch (largest difference {check['max_abs_diff']:.1e}, tolerance {check['tolerance']:.0e}, on "
                  f"{check['described']})",
        extra_files=["- `encoder/config.json`, `encoder/tokenizer.json`: the encoder's configuration and tokenizer "
                     "(`nbml.load` rebuilds the network from them and `model.safetensors`)"],
        try_it=("curl -H 'Content-Type: application/json' -d '{\"text\": \"hello there\"}' "
                "http://127.0.0.1:8000/predict"),
        serving=['nbml\'s server takes `{"text": "..."}` or `{"texts": ["...", ...]}` (JSON) or a `text/plain` '
                 f"body on `POST /predict`, and a BYTES input `text` (UTF-8) on the Open Inference Protocol "
                 f"(`POST /v2/models/{name}/infer`); it tokenises the texts itself.", "",
                 "Triton runs the ONNX model on token ids, not text: tokenise in the client (or a Python-backend "
                 "model in an ensemble) with `encoder/tokenizer.json` as the preprocessing above says."],
        limits=[f"- The model always answers one of its {n} classes, even for a text about something else; a low "
                "confidence is the only sign. Look at low-confidence inputs (`nbml.monitor`, `ds.add_from_log`).",
                f"- It reads only the first {tokens} tokens of a text; languages the encoder was not trained on "
                f"read poorly. The metrics above come from the validation split of the same data"
                + (f"; the head was then fitted again on all {config['refit_on_all']} labelled texts, validation "
                   "included." if config.get("refit_on_all") else ".")])
