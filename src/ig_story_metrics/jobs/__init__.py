"""One module per job; each plans, calls graph/, builds rows, stores them and returns a report."""
