"""fervid.worker."""
