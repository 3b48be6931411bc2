"""runtime/backends package."""
