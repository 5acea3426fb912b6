"""HPA multi-label classification kit: folds, training, stacking, thresholds, submission."""

__version__ = "0.1.0"
