"""raysim's shipped configs, installed as the package ``raysim.configs`` (see raysim/shipped.py)."""
