"""dml room."""
