"""Data sources for the kit: synthetic HPA-like datasets for demos and tests."""
