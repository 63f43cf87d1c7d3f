"""Demo data: deterministic, realistic customers at any scale (see :mod:`gateway.seed.customers`)."""
