"""Run directories and the result-row contract."""
