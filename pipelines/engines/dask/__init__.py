"""The dask engine: see ``engine.py``; helpers live beside it."""
