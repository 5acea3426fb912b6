"""Benchmarks of the kit's stages: each module's ``run()`` returns its figures, ratios measured in one run."""
