"""Models used across the book; each family lives in its own submodule."""
