"""One module per method, with its network pieces beside it."""
