"""Prompt mixtures (paper: prompt mixture modelling): an observed answer distribution as a weighted
mixture of system prompts, each crafted by a model to produce one kind of answer.

``scenario`` (what is fitted: items or scale scores, observed distributions), ``crafting`` (the
crafter's instructions, the answer-leak check), ``weights`` (SLSQP on the simplex), ``search``
(EM and gradient boosting), ``backend`` (both on one engine replica). The fitter ``mixture``
(raysim.fits.mixture) runs them; the kind ``mixture`` simulates with the result.
"""
