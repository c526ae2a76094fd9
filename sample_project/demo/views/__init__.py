"""One module per endpoint group; each module's options dict is its whole configuration."""
