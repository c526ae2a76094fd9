"""A minimal DRF project that every benchmark configuration shares."""
