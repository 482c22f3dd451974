"""ig-story-metrics: hourly snapshots of Instagram story insights into a Parquet data lake."""

__version__ = "0.1.0"
