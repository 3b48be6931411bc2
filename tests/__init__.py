"""One test tree for all packages."""
