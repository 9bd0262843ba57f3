"""fervid.model."""
