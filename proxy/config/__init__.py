"""proxy.yaml: the seed-shaped models, `${...}` interpolation and loading with field-path errors."""
