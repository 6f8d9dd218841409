"""The base columns of every population (``raysim.survey.population``): the lowest survey module,
so the ones that describe columns need not import the population's writers."""

ID, COUNTRY, WEIGHT = "respondent_id", "country", "weight"
BASE_COLUMNS = (ID, COUNTRY, WEIGHT)
PERSONA = "persona"
"""Optional: a respondent's narrative persona (text), for populations imported from persona files."""
