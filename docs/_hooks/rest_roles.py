"""A griffe extension: the reST of edgesplit's docstrings as Markdown for mkdocstrings.

The docstrings are written for ``help()`` and plain reading, with a few reST habits:
roles (``:func:`~edgesplit.game.solve.solve```) and literal blocks introduced by
``::``. Markdown shows double backticks as code already; this turns a role into its
name in code (the last part of the path with ``~``, as Sphinx shows it) and ``::`` into
``:``, so the code block that follows (indented) renders as code.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc):`(~?)([^`]+)`")
LITERAL_BLOCK = re.compile(r"(\S)::\n\n|^::\n\n", flags=re.M)


def markdown(text: str) -> str:
    """``text`` with its reST roles and literal-block markers in Markdown."""
    text = ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)
    return LITERAL_BLOCK.sub(lambda m: f"{m[1]}:\n\n" if m[1] else "\n", text)


class RestRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
