"""fervid.cli."""
