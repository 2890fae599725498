"""The API stays a thin adapter: route handlers never commit; `SessionDep` does.

`SessionDep` (api/deps.py) commits after the handler returns and before the response is sent, and
rolls back when it raises, so a handler that commits itself splits one request into two
transactions. Checked on the source (ast) of every module under api/ except deps.py (which owns
the commit) and main.py (whose lifespan bootstraps the first admin outside any request).
"""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parents[1] / "api"
OWNERS_OF_THE_COMMIT = {API / "deps.py", API / "main.py"}


def _commits(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "commit"]


def test_route_handlers_never_commit():
    offenders = {
        str(path.relative_to(API.parent)): lines
        for path in sorted(API.rglob("*.py")) if path not in OWNERS_OF_THE_COMMIT
        if (lines := _commits(path))
    }
    assert offenders == {}


def test_the_check_sees_commits():
    assert _commits(API / "deps.py")  # the one place that commits, so the check can fail
