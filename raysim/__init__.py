"""raysim: survey populations simulated with language models, at cluster scale."""
__version__ = "0.1.0"
