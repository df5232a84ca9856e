"""Ground side of the space link (never flown): peers built on independent implementations."""
