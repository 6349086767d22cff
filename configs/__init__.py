"""One YAML file per named experiment; ``metarl list`` shows them."""
