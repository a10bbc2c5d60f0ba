"""Notebook widgets (anywidget). Each reads the store and the training events, and writes decisions to the store
before it shows them as done."""
from .label import LabelWidget
from .monitor import TrainingMonitor
from .confusion import ConfusionWidget
from .cleaner import TopLossesWidget
from .runs import RunsWidget
from .explore import ExploreWidget

__all__ = ["LabelWidget", "TrainingMonitor", "ConfusionWidget", "TopLossesWidget", "RunsWidget", "ExploreWidget"]
