"""The local engine: see ``engine.py``; helpers live beside it."""
