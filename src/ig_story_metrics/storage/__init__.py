"""The only code that writes: backends (local folder, GCS), the layout, and the lake over them."""

from ig_story_metrics.storage.backend import Backend, ConflictError, LockBusy, StorageError
from ig_story_metrics.storage.lake import Lake, WriteResult, encode_parquet, open_lake

__all__ = [
    "Backend",
    "ConflictError",
    "Lake",
    "LockBusy",
    "StorageError",
    "WriteResult",
    "encode_parquet",
    "open_lake",
]
