"""The spark engine: see ``engine.py``; helpers live beside it."""
