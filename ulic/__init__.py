"""ulic: a learned image codec for ultra-low bitrates."""
__version__ = "0.1.0"
