"""jepa room."""
