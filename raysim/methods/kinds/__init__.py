"""Method kinds: how a method turns respondents into engine requests and answers into rows.

The built-in kinds are ``prompt`` (one prompt per question, optionally injected), ``simvbg``
(a background story, then three framed answers), ``value_persona`` (descriptors of a respondent's
values, and the comparison prompts of that paper) and ``uniform`` (no model). A method YAML
names its kind (``kind: prompt``) and gives the kind's parameters; see ``base`` for what a kind
declares. A kind of one's own is one module: subclass ``MethodKind``, decorate it with
``@register_kind("name")``, and expose the module through the ``raysim.method_kinds``
entry-point group.
"""

from .base import ANSWER_MODES, KINDS, Answers, MethodError, MethodKind, Setup, register_kind
from . import mixture, prompt, simvbg, uniform, value_persona  # noqa: F401  (they register)

__all__ = ["ANSWER_MODES", "KINDS", "Answers", "MethodError", "MethodKind", "Setup", "register_kind"]
