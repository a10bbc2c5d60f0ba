"""Agreement between annotators and the label training uses when they differ.

Works on the per-person labels (`ds.annotations()`: item_id, author, value, review). Cohen's kappa compares two
annotators on the items both labelled; Fleiss' kappa (with a varying number of raters per item) covers three or more.
"""
from __future__ import annotations

from collections import Counter

import pandas as pd

__all__ = ["Agreement", "agreement", "resolve", "disagreeing"]

RULES = ("reviewed", "majority", "latest")


class Agreement(dict):
    """{"method": "cohen" | "fleiss" | None, "kappa": float | None, "annotators": n, "items": n compared,
    "disagreements": n}; shown as one line.

    Raises: nothing of its own.

    Examples:
        >>> ds.agreement()["kappa"]
    """

    def __repr__(self) -> str:
        if self["kappa"] is None:
            return (f"agreement: not measured ({self['annotators']} annotator(s), {self['items']} item(s) labelled "
                    f"by two or more; ds.set_overlap(2) asks for two labels per item)")
        name = "Cohen's" if self["method"] == "cohen" else "Fleiss'"
        return (f"agreement: {name} kappa {self['kappa']:.3f} over {self['items']} items, {self['annotators']} "
                f"annotators, {self['disagreements']} disagreement(s)")


def _people(ann: pd.DataFrame) -> pd.DataFrame:
    return ann[ann["review"] == 0]


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters' labels of the same items (1 when both use one class and always agree)."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(per_item: list[Counter]) -> float:
    """Fleiss' kappa over items each rated by two or more raters (counts of each class per item)."""
    totals, agree, raters = Counter(), 0.0, 0
    for counts in per_item:
        n = sum(counts.values())
        agree += (sum(v * v for v in counts.values()) - n) / (n * (n - 1))
        totals.update(counts)
        raters += n
    observed = agree / len(per_item)
    expected = sum((v / raters) ** 2 for v in totals.values())
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def agreement(ann: pd.DataFrame) -> Agreement:
    """How much the annotators agree on the items two or more of them labelled."""
    people = _people(ann)
    authors = sorted(people["author"].unique())
    groups = {i: g for i, g in people.groupby("item_id") if len(g) >= 2}
    out = Agreement(method=None, kappa=None, annotators=len(authors), items=len(groups),
                    disagreements=sum(g["value"].nunique() > 1 for g in groups.values()))
    if not groups:
        return out
    if len(authors) == 2:
        pairs = [g.set_index("author")["value"] for g in groups.values()]
        out.update(method="cohen", kappa=float(cohen_kappa([p[authors[0]] for p in pairs],
                                                           [p[authors[1]] for p in pairs])))
    else:
        out.update(method="fleiss", kappa=float(fleiss_kappa([Counter(g["value"]) for g in groups.values()])))
    return out


def disagreeing(ann: pd.DataFrame) -> pd.DataFrame:
    """Items whose annotators gave different labels and that no reviewer has settled: `id`, `labels` ({author:
    label}), `n`, `majority` (None on a tie)."""
    reviewed = set(ann.loc[ann["review"] == 1, "item_id"])
    rows = []
    for item, g in _people(ann).groupby("item_id"):
        if item in reviewed or g["value"].nunique() < 2:
            continue
        rows.append({"id": int(item), "labels": dict(zip(g["author"], g["value"])), "n": len(g),
                     "majority": _majority(g["value"].tolist())})
    return pd.DataFrame(rows, columns=["id", "labels", "n", "majority"])


def _majority(values: list) -> str | None:
    top = Counter(values).most_common(2)
    return top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None


def resolve(frame: pd.DataFrame, ann: pd.DataFrame, use_majority: bool) -> pd.DataFrame:
    """`frame` (items with their latest `label`) with the label training uses and `label_rule` saying which:
    the reviewed label where there is one, else (with overlap asked for) the annotators' majority, else the latest."""
    frame = frame.copy()
    frame["label_rule"] = "latest"
    if ann.empty or frame.empty:
        return frame
    chosen: dict[int, tuple[str, str]] = {}
    if use_majority:
        for item, g in _people(ann).groupby("item_id"):
            top = _majority(g["value"].tolist()) if len(g) >= 2 else None
            if top is not None:
                chosen[int(item)] = (top, "majority")
    for r in ann[ann["review"] == 1].sort_values("time").itertuples(index=False):
        chosen[int(r.item_id)] = (r.value, "reviewed")
    if chosen:
        hit = frame["id"].isin(list(chosen))
        picked = [chosen[int(i)] for i in frame.loc[hit, "id"]]
        frame.loc[hit, "label"] = [p[0] for p in picked]
        frame.loc[hit, "label_rule"] = [p[1] for p in picked]
    return frame
