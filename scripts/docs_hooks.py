"""mkdocs hooks of the documentation site (mkdocs.yml).

The pages under docs/ are also the manual read on the repository, where they link to source files
outside docs/ (`../benches/metrics.py`, `../README.md`). Those files are not part of the site, so
such a link is rewritten to the repository path in code type: the site keeps `--strict` link
checking for every link between its pages (tests/test_package.py checks the repository links).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(m: re.Match[str]) -> str:
        text, target = m.group(1), m.group(2)
        path = target.split("#", 1)[0]
        resolved = posixpath.normpath(posixpath.join(here, path)) if path else ""
        if not resolved.startswith("../"):
            return m.group(0)  # a page or file of the site: mkdocs checks it
        repo_path = resolved[len("../") :]
        return text if text.strip("`") == repo_path else f"{text} (`{repo_path}` in the repository)"

    return _LINK.sub(rewrite, markdown)
