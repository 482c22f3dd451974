"""Pure data, no I/O: the metrics catalogue, stories, table specs and rows, shared counters."""
