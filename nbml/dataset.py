"""`nbml.Dataset`: the user's façade over the project store. It adds items through their kind's ingest
(`add_images`, `add_texts`) and holds the conveniences (`ds.label()`, `ds.suggest()`, `ds.explore()`, ...) that
import analysis, models and widgets only when called, as pandas keeps `df.plot` in an accessor. The store below
(`nbml.store.Store`) knows nothing of them; everything here only delegates.
"""
from __future__ import annotations

import os

import pandas as pd

from ._imaging import DEFAULT_MAX_PIXELS
from ._report import IngestReport
from . import kinds
from .store import Store

__all__ = ["Dataset"]


class Dataset(Store):
    """An nbml project: `Dataset("pets.nbml")` opens the file, or creates it. A project holds one kind of item
    (images, texts or table rows).

    `Dataset("postgresql://user:password@host:port/db", user="alice")` opens a project on a PostgreSQL server that
    several people label at once (see docs/teams.md). `user` (default: $NBML_USER, else the login name) is recorded
    as the author of every change; `undo` reverts only that person's changes.

    `max_pixels` is the decompression-bomb limit applied to every image read for this project.

    `path`: the project file (a SQLite file, created with its folder `<path>.d/` when missing) or a `postgresql://` URL.

    Raises:
        ValueError: `user` is empty, or a database URL cannot be read, is not PostgreSQL, or psycopg 3 is not installed.
        IsADirectoryError: `path` is a folder.
        ConnectionError: the PostgreSQL server cannot be reached or refuses the login.
        RuntimeError: a newer nbml wrote the project.

    Examples:
        >>> ds = nbml.Dataset("pets.nbml")
        >>> ds = nbml.Dataset("postgresql://alice:secret@db.example:5432/pets", user="alice")
    """

    def __init__(self, path: str | os.PathLike, *, user: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        from .embeddings import EmbeddingCache
        self.max_pixels = int(max_pixels)
        super().__init__(path, user=user)
        self._embedding_cache = EmbeddingCache(self)   # loaded embeddings, reused while current (see embed)
        self._on_close.append(self._embedding_cache.clear)

    # -- adding items (each kind's ingest, nbml.kinds) ----------------------------------------------------------
    def add(self, values, labels=None, *, kind: str | None = None, **kw) -> IngestReport:
        """Add items of any kind nbml knows (`nbml.kinds.registered()`): `kind` names it (by default the project's
        kind); `values` and `labels` as that kind's own `add_...` method takes them. Returns the IngestReport.

        `**kw` goes to that method as is (`label_col=...`, `progress=...`).

        Raises:
            ValueError: the project is empty and no `kind` is given, `kind` is unknown, or `labels` is given for images
                or table rows (they take labels from folders or a column).
            nbml.store.KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> ds.add(["Free prize! Call now", "See you at 5"], ["spam", "ham"], kind="text")
        """
        kind = kind or self.kind
        if kind is None:
            raise ValueError(f"this project is empty: say which kind of item to add, one of {kinds.registered()} "
                             f"(ds.add(values, kind='text'), or ds.add_images / add_texts / add_table)")
        return kinds.get(kind).add(self, values, labels, **kw)

    def add_images(self, folder_or_paths, label_from="folder", *, progress: bool | None = None) -> IngestReport:
        """Add image files: a folder of class folders (ImageNet style), a flat folder, a file, or a list of them.

        Every readable image is added even when others are bad; the report lists added ids, duplicates (same
        content as an item already here) and skipped files with one reason each.

        `folder_or_paths`: a folder, an image file, or a list of folders and files. `label_from="folder"` takes each
        image's label from the name of the class folder it sits in; `None` adds every image unlabelled. `progress`: a
        progress line on stderr (default: when stderr is a terminal).

        Raises:
            ValueError: `label_from` is not 'folder', None or a function.
            nbml.store.KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> report = ds.add_images("pets/")
            >>> ds.add_images(["new/a.jpg", "new/b.jpg"], label_from=None)
        """
        return kinds.get("image").add_images(self, folder_or_paths, label_from, progress=progress)

    def add_dataframe(self, df: pd.DataFrame, path_col: str = "path", label_col: str | None = "label",
                      split_col: str | None = None, *, progress: bool | None = None) -> IngestReport:
        """Add the images a DataFrame lists (one path per row, optional label and split columns).

        `df`: the DataFrame; `path_col`: its column of image paths; `label_col`: its column of labels (None: none; a
        missing value leaves the image unlabelled); `split_col`: a column of 'train' / 'valid' / 'test' (None: nbml
        splits). `progress` as in `add_images`.

        Raises:
            KeyError: a named column is not in `df`.
            ValueError: a split is not 'train', 'valid' or 'test'.
            nbml.store.KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> ds.add_dataframe(df, path_col="file", label_col="breed")
        """
        return kinds.get("image").add_dataframe(self, df, path_col, label_col, split_col, progress=progress)

    def add_texts(self, texts, labels=None, *, text_col: str = "text", label_col: str | None = None,
                  encoding: str = "utf-8", label_from="folder", progress: bool | None = None) -> IngestReport:
        """Add texts: a list or pandas Series (with `labels`, a list or Series of the same length, None for
        unlabelled), a DataFrame (`text_col`, `label_col`), a CSV, JSON Lines or Parquet file (same columns), or
        a folder of .txt files (class folders give labels). The text is stored in the project.

        Empty texts and binary files are skipped with a reason; bytes that are not valid `encoding` are decoded
        with replacement and reported; exact duplicates (after Unicode normalisation and whitespace folding) are
        reported, not added twice. See nbml.kinds.text.

        `label_from="folder"`: in a folder of .txt files, each file's label is the name of the class folder it sits in
        (None: unlabelled). `progress` as in `add_images`.

        Raises:
            FileNotFoundError: `texts` is a path that does not exist.
            KeyError: `text_col` or `label_col` is not a column of the table.
            TypeError: `texts` is none of the inputs above.
            ValueError: `labels` and texts differ in length, `labels` is given with a folder, or the file type or
                `encoding` is unknown.
            nbml.store.KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> ds.add_texts(["Free prize! Call now", "See you at 5"], ["spam", "ham"])
            >>> ds.add_texts("sms.csv", text_col="message", label_col="label")
        """
        return kinds.get("text").add_texts(self, texts, labels, text_col=text_col, label_col=label_col,
                                           encoding=encoding, label_from=label_from, progress=progress)

    def add_table(self, data, label_col: str | None = "label", id_col: str | None = None, *,
                  progress: bool | None = None) -> IngestReport:
        """Add table rows: a pandas DataFrame, or a CSV, Parquet or JSON Lines file. Each row is one item, kept in
        the project with its types (numbers, booleans, text, dates as ISO text, missing as null); `label_col` gives
        labels (missing: unlabelled), `id_col` names each row.

        The first table sets the project's columns and their types; a column of mixed types is kept as text,
        infinities are read as missing, an empty column and a text column of all-different values (an identifier)
        are left out of the model (`ds.use_columns([...])` puts one back), all reported. Exact duplicate rows are
        reported, not added twice; a later table with other columns is refused, naming the differences. See
        nbml.kinds.table.

        `data`: the DataFrame or the file's path. `progress` as in `add_images`.

        Raises:
            FileNotFoundError: `data` is a path that is not a file.
            TypeError: `data` is neither a DataFrame nor a path.
            KeyError: `label_col` or `id_col` is not a column.
            ValueError: the file type is unknown, the table has no columns besides the label and id, or its columns
                differ from the project's.
            nbml.store.KindMismatchError: the project already holds items of another kind.

        Examples:
            >>> ds.add_table("titanic.csv", label_col="Survived", id_col="PassengerId")
        """
        return kinds.get("table").add_table(self, data, label_col, id_col, progress=progress)

    def columns(self) -> pd.DataFrame:
        """A table project's columns: name, type, role ('feature', 'identifier', 'empty', 'ignored') and why.

        Raises: nothing of its own.

        Examples:
            >>> ds.columns()
        """
        frame = pd.DataFrame(kinds.get("table").columns_of(self), columns=["name", "type", "role", "reason"])
        frame["reason"] = frame["reason"].fillna("")      # a feature needs no reason: empty, not NaN
        return frame

    def use_columns(self, include=(), exclude=()) -> pd.DataFrame:
        """Put columns of a table project into the model (`include`, an identifier-like column say) or leave them
        out (`exclude`); the next training reads the columns whose role is 'feature'. Returns `ds.columns()`.

        Raises:
            KeyError: a named column is not in the project.
            ValueError: an included column has no values.

        Examples:
            >>> ds.use_columns(include=["Cabin"], exclude=["Name"])
        """
        kinds.get("table").use_columns(self, include, exclude)
        return self.columns()

    def candidates(self, run_id: int | None = None) -> pd.DataFrame:
        """The models a table run trained side by side and how each scored (a row each: `accuracy` and `valid_loss`
        on the validation split, `cv_accuracy` and `cv_log_loss` when chosen by cross-validation, `kept`), for the
        latest run that had several (or `run_id`). `attrs["kept_because"]` says why the kept one was chosen.

        Raises:
            LookupError: there is no run, or the run (the latest, or `run_id`) trained one model only.

        Examples:
            >>> ds.candidates()
            >>> ds.candidates(run_id=3)
        """
        runs = self.runs()
        if runs.empty:
            raise LookupError("no runs yet: train one with nbml.train(ds)")
        with_cands = runs[runs["params"].map(lambda p: bool((p or {}).get("candidates")))]
        row = with_cands.iloc[-1] if run_id is None and len(with_cands) else runs[runs["id"] == run_id]
        if isinstance(row, pd.DataFrame):
            if row.empty:
                raise LookupError(f"run {run_id} trained one model only (candidates are a table project's)"
                                  if run_id is not None else "no run trained several models (a table project's do)")
            row = row.iloc[0]
        params = row["params"] or {}
        if not params.get("candidates"):
            raise LookupError(f"run {row['id']} trained one model only (candidates are a table project's)")
        frame = pd.DataFrame.from_dict(params["candidates"], orient="index").rename_axis("model").reset_index()
        frame["kept"] = frame["model"] == params.get("kept")
        frame.attrs.update(run_id=int(row["id"]), kept_because=params.get("kept_because"),
                           chosen_by=params.get("chosen_by"))
        return frame

    def load_run(self, run_id: int | None = None):
        """The model a run saved (the latest completed run when no id is given).

        `run_id`: a run's id from `ds.runs()` (None: the latest completed run).

        Raises:
            LookupError: no run saved a model, or run `run_id` did not.

        Examples:
            >>> model = ds.load_run()
            >>> model = ds.load_run(run_id=2)
        """
        frame = self.runs()
        done = frame[frame["model_path"].notna()] if not frame.empty else frame
        if done.empty:
            raise LookupError("no saved model in this project yet; train one with nbml.train(ds)")
        row = done.iloc[-1] if run_id is None else done[done["id"] == run_id]
        if isinstance(row, pd.DataFrame):
            if row.empty:
                raise LookupError(f"run {run_id} has no saved model (runs with one: {done['id'].tolist()})")
            row = row.iloc[0]
        from .model import load
        return load(row["model_path"], dataset=self)

    # -- the data-centric loop: embeddings and what they show (nbml.embeddings, nbml.analysis) ---------------------
    def embed(self, backbone=None, **kw):
        """Embeddings of the usable items, computed only where the store has none (float16 beside the project file).

        Backbone: pretrained `arch` (resnet18) when its weights can be had, else the body of the latest trained
        model, never a random one; or pass a Model, a run id, 'latest', a timm name, or `weights='file'`.
        Returns `Embeddings` (`.ids`, `.vectors`, `.model_id`, `.source`, `.pca()`); see nbml.embeddings.embed.
        The loaded embeddings are kept (per backbone) and reused while the project's items and embeddings are
        unchanged, with labels and splits read afresh, so `similar`, `suggest` and the rest need not reload them;
        `ids=` loads those items only, every time.

        `**kw` goes to nbml.embeddings.embed: `ids=`, `bs=`, `progress=`, `weights=`.

        Raises:
            ValueError: the project has no items usable.
            TypeError: `backbone` is none of the forms above.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> emb = ds.embed()
            >>> emb = ds.embed("latest", bs=64)
        """
        from .embeddings import embed
        if kw.get("ids") is not None:
            return embed(self, backbone, **kw)
        return self._embedding_cache.get(backbone, **kw)

    def suggest(self, model=None, n: int = 20, strategy: str = "margin", **kw) -> pd.DataFrame:
        """Unlabelled items to label next, most useful first: `id`, `score`, `predicted`, `confidence`, `path`.

        strategy: 'margin', 'entropy', 'least_confident', 'random' or 'diverse' (uncertain and spread out in
        embedding space). Without a model, a head fitted on the embeddings scores them; see nbml.analysis.suggest.

        `n`: how many items. `**kw` goes to nbml.analysis.suggest: `backbone=`, `embeddings=`, `pool=`, `seed=`.

        Raises:
            ValueError: `strategy` is unknown, `n` is below 1, the project has no items, the strategy needs labelled
                items of two classes, or both `model` and `backbone=` are given.
            TypeError: `model` is not an nbml.Model (a training handle, say).
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> ds.suggest(model, n=50, strategy="entropy")
            >>> ds.suggest()
        """
        from .analysis import suggest
        return suggest(self, model, n=n, strategy=strategy, **kw)

    def similar(self, item_or_image, k: int = 20, **kw) -> pd.DataFrame:
        """The `k` items most like an item id, a list of ids (their mean), an image path, bytes or Pillow image:
        `id`, `similarity`, `label`, `split`, `path`. `labelled=False` searches the unlabelled items only.
        The embeddings are loaded on the first call and reused while current (see `embed`).

        `item_or_image`: the query (for texts, a string; for tables, a dict of column values). `**kw` goes to
        nbml.analysis.similar: `labelled=`, `label=`, `backbone=`, `embeddings=`.

        Raises:
            ValueError: the project has no items, `k` is below 1, or the list of ids is empty.
            TypeError: `item_or_image` is none of the forms above.
            FileNotFoundError: `item_or_image` is an image path that is not a file.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> ds.similar(42, k=10)
            >>> ds.similar("query.jpg", labelled=False)
        """
        from .analysis import similar
        return similar(self, item_or_image, k=k, **kw)

    def duplicates(self, threshold: float | None = None, **kw) -> pd.DataFrame:
        """Pairs of items that are the same picture: exact (same content or pixels) and near (16x16 thumbnails that
        correlate >= pixel_threshold, or, with a pretrained backbone, embeddings with cosine similarity >=
        threshold), flagging pairs that cross the train/valid/test split (`leak`); see nbml.analysis.duplicates.

        `**kw` goes to nbml.analysis.duplicates: `pixel_threshold=`, `backbone=`, `embeddings=`, `max_pairs=`.

        Raises:
            ValueError: the project has no items.
            nbml.backbone.NoBackboneError: `threshold` is given and there is no backbone (without one, only the pixel
                comparison runs).

        Examples:
            >>> pairs = ds.duplicates()
            >>> pairs[pairs["leak"]]
        """
        from .analysis import duplicates
        return duplicates(self, threshold=threshold, **kw)

    def outliers(self, n: int | None = None, **kw) -> pd.DataFrame:
        """Items far from everything else in embedding space, most isolated first: `id`, `score`, ...

        `n`: how many items (None: all of them). `**kw` goes to nbml.analysis.outliers: `k=` (neighbours), `backbone=`,
        `embeddings=`, `labelled=`.

        Raises:
            ValueError: the project has no items, or fewer than two have embeddings.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> ds.outliers(n=20, k=10)
        """
        from .analysis import outliers
        return outliers(self, n=n, **kw)

    def label_issues(self, model=None, **kw) -> pd.DataFrame:
        """Labelled items whose label is likely wrong, most likely first: `id`, `label`, `suggested`, `score`.

        Every labelled item, those `model` trained on included: out-of-sample probabilities from cross-validated
        heads on the embeddings and on pixel thumbnails, and confident learning (cleanlab); see
        nbml.analysis.label_issues.

        `**kw` goes to nbml.analysis.label_issues: `folds=`, `backbone=`, `embeddings=`, `seed=`, `C=`.

        Raises:
            ValueError: no item is labelled, fewer than two classes have two labelled items, `model` does not know a
                class used here, or confident learning fails.
            TypeError: `model` is not an nbml.Model.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> ds.label_issues()
            >>> ds.label_issues(model, folds=5)
        """
        from .analysis import label_issues
        return label_issues(self, model, **kw)

    def stats(self):
        """Counts per class and split, labelled against unlabelled, warnings for classes too small to learn, and
        a chart drawn by nbml's bundled Vega-Lite, offline (`.chart`; its spec is `.chart.spec`).

        Raises: nothing of its own.

        Examples:
            >>> stats = ds.stats()
            >>> stats.chart
        """
        from .analysis import stats
        return stats(self)

    def forecast(self, model=None, target: float | None = None, **kw):
        """"Can ML solve my problem?": the accuracy `nbml.train(self)` is expected to reach now, with twice and four
        times the labels (80% intervals), about how many labels reach `target` (0.9 for 90%), which classes hold it
        back, or "not yet: label N more per class". Out-of-sample scores of the fast head at subsets of the labels,
        a learning curve, and a correction to the trained model measured by a backtest; 'valid' and 'test' labels
        are not read. `.summary`, `.frame`, `.per_class`, `.chart()`; see nbml.forecast.

        `**kw` goes to nbml.forecast.forecast.

        Raises:
            ValueError: `target` is not between 0 and 1, or the project has no items.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).

        Examples:
            >>> fc = ds.forecast(target=0.9)
            >>> fc.summary
        """
        from .forecast import forecast
        return forecast(self, model, target, **kw)

    # -- widgets ----------------------------------------------------------------------------------------------
    def label(self, model=None, *, filter: str = "unlabelled", queue: str | None = None, strategy: str = "margin",
              page_size: int = 48, low_confidence: float = 0.6, rerank_every: int = 10):
        """A keyboard labelling grid: a class's key labels (its name when every class is one character, else 1-9
        in order and type-ahead past nine; each chip shows its key), arrows move, Enter accepts the model's suggestion, Backspace or
        Ctrl+Z undoes, X marks unusable, shift-click selects. Filters: 'unlabelled', 'all', 'label:NAME',
        'predicted:NAME', 'low_confidence' (the last two need `model`). `queue="suggest"` works through
        `ds.suggest(model, strategy=...)` instead, ranked again every `rerank_every` labels in the background.

        `filter`: which items the grid shows, one of the filters above. `page_size`: items per page. `low_confidence`:
        the confidence under which the 'low_confidence' filter shows an item.

        Raises:
            ValueError: `queue` is not None or 'suggest', `filter` is unknown or needs a model that is not given, or
                `page_size` is below 1.

        Examples:
            >>> ds.label()
            >>> ds.label(model, queue="suggest", strategy="diverse")
        """
        from .widgets.label import LabelWidget
        if queue not in (None, "suggest"):
            raise ValueError(f"queue must be 'suggest' or None, not {queue!r}")
        return LabelWidget(self, model, filter="queue" if queue else filter, page_size=page_size,
                           low_confidence=low_confidence, strategy=strategy, rerank_every=rerank_every)

    def explore(self, backbone=None, *, projection: str = "auto"):
        """The data at a glance: a 2-D map of the embeddings (UMAP when installed, else PCA) coloured by label,
        where a free-hand lasso (or a box: a toggle above the map) selects items to label in bulk with the grid's
        keys and a click lists an item's neighbours; the class-frequency chart; and the duplicate and
        likely-wrong-label lists, fixable with the grid's keys.

        `backbone`: whose embeddings to map (as in `embed`; the default backbone otherwise). `projection`: 'auto' (UMAP
        when installed, else PCA), 'umap' or 'pca'.

        Raises:
            ValueError: the project has no items usable, or `projection` is none of 'auto', 'umap', 'pca'.
            nbml.backbone.NoBackboneError: no pretrained weights can be had and the project has no trained model (or
                `backbone` names a run without one).
            ImportError: `projection='umap'` and umap-learn is not installed (more than 15 items).

        Examples:
            >>> ds.explore()
            >>> ds.explore(model, projection="pca")
        """
        from .widgets.explore import ExploreWidget
        return ExploreWidget(self, backbone, projection=projection)

    def compare_runs(self):
        """Every training run's curves overlaid, with a table of parameters and final metrics.

        Raises: nothing of its own.

        Examples:
            >>> ds.compare_runs()
        """
        from .widgets.runs import RunsWidget
        return RunsWidget(self)

    # -- the serving loop -------------------------------------------------------------------------------------------
    def add_from_log(self, max_confidence: float = 0.6, limit: int | None = None, source=None,
                     model: str | None = None) -> IngestReport:
        """Add the served inputs the model was least sure of (confidence <= max_confidence, lowest first) as
        unlabelled items, from this project's prediction log or `source` (an artifact folder); see nbml.predlog.

        `limit`: at most this many inputs (None: every one under `max_confidence`). `model`: one model's predictions
        when the log holds several.

        Raises:
            FileNotFoundError: `source` (or the project) has no prediction log.

        Examples:
            >>> ds.add_from_log(max_confidence=0.5, limit=100)
            >>> ds.add_from_log(source="export/pets-resnet18")
        """
        from .predlog import add_from_log
        return add_from_log(self, max_confidence=max_confidence, limit=limit, source=source, model=model)



