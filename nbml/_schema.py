"""Tables of an nbml project, in SQLAlchemy Core: the same tables on SQLite and PostgreSQL.

A change to a table raises SCHEMA_VERSION and adds the step that upgrades older projects (nbml/_migrations.py)."""
from __future__ import annotations

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table,
                        Text, UniqueConstraint)

SCHEMA_VERSION = 3

metadata = MetaData()

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# An item is one sample. Images have a path; text snippets and table rows (later) carry `content` instead.
items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False, default="image"),
    Column("path", Text),                    # display form, always valid UTF-8
    Column("path_raw", LargeBinary),         # exact file-system bytes when the name is not valid UTF-8
    Column("content", Text),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", Integer),
    Column("mtime", Float),
    Column("width", Integer),
    Column("height", Integer),
    Column("status", String(16), nullable=False, default="ok"),   # ok | removed | unusable
    Column("split", String(8)),                                   # train | valid | test | NULL
    Column("label", Text),                                        # current label (history in `labels`)
    Column("label_source", String(8)),
    Column("label_time", Float),
    Column("added_at", Float, nullable=False),
    Column("origin", String(32), nullable=False, default="import"),
    Index("ix_items_sha256", "sha256"),
    # the grid's pages seek on these in id order (keyset paging), and the kept counts group by the first (schema 3)
    Index("ix_items_status_label_id", "status", "label", "id"),
    Index("ix_items_label_id", "label", "id"),
)

classes = Table(
    "classes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("added_at", Float, nullable=False),
)

# Every label change ever made, including those made by undo.
labels = Table(
    "labels", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("value", Text),
    Column("source", String(8), nullable=False),
    Column("time", Float, nullable=False),
    Column("action_id", Integer),
    Column("author", Text),          # who made the change (NULL before schema 2)
    Index("ix_labels_item", "item_id"),
)

# The undo log: one row per user-level change, with what each touched item was before and after.
actions = Table(
    "actions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("payload", Text, nullable=False),   # JSON
    Column("time", Float, nullable=False),
    Column("undone", Integer, nullable=False, default=0),   # 0 | 1 undone | 2 skipped: another person changed it
    Column("author", Text),          # whose undo it is (NULL before schema 2: anyone's)
    Index("ix_actions_undone", "undone", "id"),
    Index("ix_actions_author", "author", "undone", "id"),
)

# Each person's own label of an item (Argilla's per-user responses): the latest a person gave, and at most one
# reviewed label (review=1) that settles a disagreement. What `ds.set_overlap(k)` counts and kappa compares.
annotations = Table(
    "annotations", metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("author", Text, primary_key=True),
    Column("review", Integer, primary_key=True),
    Column("value", Text, nullable=False),
    Column("time", Float, nullable=False),
)

# Who holds an item of the labelling queue, until when (Label Studio's TaskLock): one row per held item.
leases = Table(
    "leases", metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_leases_holder", "holder"),
)

# Thumbnails of a project on a database server: everyone's grid reads them here, as nobody reads another's disk.
thumbs = Table(
    "thumbs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

snapshots = Table(
    "snapshots", metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("n_items", Integer, nullable=False),
    Column("class_counts", Text, nullable=False),   # JSON
    Column("listing", LargeBinary, nullable=False), # zlib JSON [[id, sha256, label, split], ...]
    Column("label_rules", Text),                    # JSON {reviewed|majority|latest: items} (schema 2)
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("status", String(16), nullable=False),   # running | completed | stopped | failed
    Column("arch", Text, nullable=False),
    Column("params", Text, nullable=False),         # JSON
    Column("history", Text, nullable=False, default="[]"),  # JSON: one dict per epoch
    Column("metrics", Text),                        # JSON: final metrics
    Column("snapshot_id", String(64)),
    Column("device", String(32)),
    Column("duration_s", Float),
    Column("versions", Text),                       # JSON
    Column("model_path", Text),
    Column("error", Text),
)

# Rows of the decoded-image cache (see nbml/data.py): which row of the size's array holds which file.
image_cache = Table(
    "image_cache", metadata,
    Column("size", Integer, primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("row", Integer, nullable=False),
    UniqueConstraint("size", "row", name="uq_image_cache_row"),
)

# One row per prediction served (nbml.predlog). Also created on its own in `<artifact>/predictions.sqlite` when a
# server runs without a project.
predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),          # unix seconds when the answer was ready
    Column("model", Text, nullable=False),          # the served model's name
    Column("latency_ms", Float, nullable=False),    # request received to answer ready, inside the server
    Column("label", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("sha256", String(64), nullable=False),   # of the encoded image bytes as received
    Column("image", LargeBinary),                   # the encoded image, only when image logging is on
    Index("ix_predictions_model_time", "model", "time"),
    Index("ix_predictions_confidence", "confidence"),
)

# Rows of the per-backbone embedding files (see nbml/embeddings.py): which row of `model_id`'s float16 file holds the
# embedding of which content.
embeddings = Table(
    "embeddings", metadata,
    Column("model_id", Text, primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("row", Integer, nullable=False),
    UniqueConstraint("model_id", "row", name="uq_embeddings_row"),
)
