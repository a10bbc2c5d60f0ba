"""What `nbml.export` asks of the table kind. The ONNX graph is what follows encoding: the network's graph takes
`cats` int64 [N, categories] and `conts` float32 [N, numbers] (TorchScript export), the trees' graph takes
`features` float32 [N, numbers + categories] (LightGBM through onnxmltools). The encoding itself (category maps,
normalisation statistics, column order and types) is data in config.json (`prep`), never a pickle; the server's
half is nbml/kinds/table_serving.py, on `table_encoding` alone."""
from __future__ import annotations


from .base import ONNX_OUTPUT

CHECK_ROWS = 256                  # validation rows the ONNX graph is compared with the trained model on at export
SERVE_REQUIREMENTS = ()
QUANTIZE_REFUSED = ("int8 is not offered for table models: their graphs are small and already fast on a CPU. "
                    "Export without quantize=")
TREES_OPSET = 15                  # the highest opset onnxmltools writes LightGBM in


def _inputs(prep: dict, trees: bool) -> list[str]:
    if trees:
        return ["features"]
    return [name for name, cols in (("cats", prep["cats"]), ("conts", prep["conts"])) if cols]


def _export_trees(graph: dict, path, opset: int) -> None:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType
    booster, width = graph["booster"], graph["width"]
    onx = onnxmltools.convert_lightgbm(booster, initial_types=[("features", FloatTensorType([None, width]))],
                                       zipmap=False, target_opset=min(opset, TREES_OPSET))
    names = [o.name for o in onx.graph.output]
    if ONNX_OUTPUT not in names:
        raise RuntimeError(f"onnxmltools named the outputs {names}, not {ONNX_OUTPUT!r}")
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())


_export_trees.__name__ = "onnxmltools"


def onnx_graph(model, net) -> dict:
    import torch
    from .table_encoding import encode, features
    prep = net.prep
    trees = net.use == "lightgbm"
    cats, conts = encode([{}, {}], prep)             # two rows of missing values: the shapes are what matter
    inputs = _inputs(prep, trees)
    if trees:
        n_classes = len(model.classes)

        class TreeProbabilities(torch.nn.Module):
            def forward(self, x):
                from .table_encoding import tree_probs
                return torch.from_numpy(tree_probs(net.booster, x.numpy(), n_classes))
        sample = torch.from_numpy(features(cats, conts))
        return dict(wrapper=TreeProbabilities().eval(), sample=(sample,), inputs=inputs, output=ONNX_OUTPUT,
                    dynamic={"features": {0: "batch"}}, exporters=(_export_trees,), booster=net.booster,
                    width=int(sample.shape[1]))
    network = net.torch_model()

    class Probabilities(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, *xs):
            given = dict(zip(inputs, xs))
            n = xs[0].shape[0]
            c = given.get("cats", torch.zeros((n, 0), dtype=torch.int64))
            x = given.get("conts", torch.zeros((n, 0), dtype=torch.float32))
            return torch.softmax(self.network(c, x), dim=1)

    sample = {"cats": torch.from_numpy(cats), "conts": torch.from_numpy(conts)}
    return dict(wrapper=Probabilities().eval(), sample=tuple(sample[k] for k in inputs), inputs=inputs,
                output=ONNX_OUTPUT, dynamic={k: {0: "batch"} for k in inputs}, exporters=("torchscript", "torch.export"))


def check_rows(model, limit: int = CHECK_ROWS) -> tuple[list[dict], str]:
    """The project's validation rows (at most `limit`, a fixed sample), or two rows of missing values."""
    from .export_parts import validation_sample
    from .table_encoding import rows_of
    rows = validation_sample(model, limit, rows_of)
    if rows:
        return rows, f"{len(rows)} validation rows"
    return [{}, {}], "2 rows of missing values (no project with validation rows)"


def check_feeds(model, size: int | None = None) -> tuple[list[dict], str]:
    from .table_encoding import encode, features
    rows, described = check_rows(model)
    prep = model.net.prep
    trees = model.net.use == "lightgbm"
    out = []
    for chunk in [rows[:1]] + [rows[i:i + 64] for i in range(0, len(rows), 64)]:
        cats, conts = encode(chunk, prep)
        out.append({"features": features(cats, conts)} if trees else
                   {k: v for k, v in (("cats", cats), ("conts", conts)) if k in _inputs(prep, False)})
    return out, described


def export_config(model) -> dict:
    ignored = [c["name"] for c in model.config.get("columns", []) if c["role"] != "feature"]
    return {"preprocessing": {
        "rows": "a JSON object per row: column -> value (number, true/false, text, ISO date, or null for missing)",
        "encoding": "config.json `prep`: per category column its levels (code 0 = missing or unknown, level i -> "
                    "i + 1); per number column mean, std, the median that fills a missing value and whether a 0/1 "
                    "missing flag follows the numbers",
        "reference": "nbml.kinds.table_encoding.encode(rows, prep) (numpy only) makes the graph's inputs",
        "output": "softmax probabilities [N, len(classes)], in the order of `classes`"},
        "ignored_columns": ignored}


def _v2_type(kind: str) -> str:
    return {"number": "FP64", "bool": "BOOL"}.get(kind, "BYTES")


def v2_inputs(prep: dict) -> list[dict]:
    """The Open Inference Protocol's inputs: one per column, in the model's order."""
    cols = prep["conts"] + prep["cats"]
    return [{"name": c["name"], "datatype": _v2_type(c["type"]), "shape": [-1]} for c in cols]


def triton_entry(config: dict) -> dict[str, str]:
    """Triton's entry runs the ONNX graph on the encoded arrays: the client encodes rows with
    `nbml.kinds.table_encoding.encode(rows, prep)`."""
    from .export_parts import triton_arrays_config
    return triton_arrays_config(config, [(n, "TYPE_INT64" if n == "cats" else "TYPE_FP32")
                                         for n in config["onnx"]["inputs"]], ONNX_OUTPUT)


def card(config: dict) -> dict:
    n, name = len(config["classes"]), config["name"]
    check = config["onnx"]["check"]
    prep = config["prep"]
    trees = config.get("model") == "lightgbm"
    cols = [c["name"] for c in prep["conts"] + prep["cats"]]
    cands = config.get("candidates") or {}
    scores = "; ".join(f"{k} {v['accuracy']:.4f}" for k, v in cands.items())
    example = ", ".join(f'"{c}": null' for c in cols[:3])
    what = {"lightgbm": "LightGBM gradient-boosted trees",
            "linear": "a logistic regression (numbers and one-hot categories)"}.get(
        config.get("model"), f"a fastai TabularModel (embeddings, layers {config.get('layers')})")
    tried = f" (validation accuracy of each model trained: {scores}; the best was kept)" if scores else ""
    return dict(
        summary=f"A table classifier made with nbml {config['exported_with']}: {what} on {len(cols)} columns, "
                f"{n} classes{tried}.",
        input=[f"- {k}: {v}" for k, v in config["preprocessing"].items()] +
              [f"- columns: " + ", ".join(f"`{c['name']}` ({c['type']})" for c in prep["conts"] + prep["cats"])],
        onnx_file=f"- `model.onnx` (float32): inputs {', '.join(f'`{k}`' for k in config['onnx']['inputs'])}, output "
                  f"`{ONNX_OUTPUT}` float32 [N, {n}]; checked at export against the trained model (largest "
                  f"difference {check['max_abs_diff']:.1e}, tolerance {check['tolerance']:.0e}, on "
                  f"{check['described']})",
        extra_files=(["- `lightgbm.txt`: the trees in LightGBM's text format"] if trees else []),
        try_it="curl -H 'Content-Type: application/json' -d '{\"row\": {" + example.replace('"', '\\"') +
               "}}' http://127.0.0.1:8000/predict",
        serving=['nbml\'s server takes `{"row": {column: value, ...}}` or `{"rows": [...]}` on `POST /predict`, and '
                 f"one input per column on the Open Inference Protocol (`POST /v2/models/{name}/infer`: numbers "
                 "FP64/FP32/INT64, true/false BOOL, text and dates BYTES). A missing value is null; an unseen "
                 "category is read as unknown; a missing, extra or mistyped column is a 400 naming it.", "",
                 "Triton runs the ONNX graph on the encoded arrays: encode the rows with "
                 "`nbml.kinds.table_encoding.encode(rows, prep)` in the client."],
        limits=[f"- The model always answers one of its {n} classes; a low confidence is the only sign of a row "
                "unlike its training data.",
                "- The metrics above come from the validation split of the same data."])
