"""Only what pyproject.toml cannot say: the packages are raysim's (found, so a new subpackage
ships without a list to update) plus ``raysim.configs``, which is the repository's ``configs/``
directory: one copy, ``configs/`` in a checkout, ``raysim/configs/`` in a wheel (raysim/shipped.py)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["raysim*"]), "raysim.configs"], package_dir={"raysim.configs": "configs"})
