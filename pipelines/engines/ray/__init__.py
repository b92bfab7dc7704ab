"""The ray engine: see ``engine.py``; helpers live beside it."""
