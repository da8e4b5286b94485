"""intervene room."""
