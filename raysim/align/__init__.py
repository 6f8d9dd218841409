"""Population-aligned persona sets (paper: population-aligned persona generation): weights that
make a persona pool stand for a reference population (``importance``), before simulating."""
