# Stub of the optional compiled walk (_walk.pyx); see that file.
from collections.abc import Callable
from typing import Any

ABI: int
PLAIN: int
PATH: int
HREF: int
PRESENTATION: int
CHECKED: int
USE: int

class Info:
    def __init__(
        self, name: str, kinds: dict[str, int], text_ok: bool, text_only: bool, special: int
    ) -> None: ...

class Walker:
    def __init__(
        self,
        elements: dict[str, Info],
        clean: dict[tuple[str, str, str], str],
        child: Callable[..., bool | None],
        tail: Callable[[Any, Any, Any], None],
        splice: Callable[[Any, dict[Any, bool]], None],
        max_depth: int,
        max_attributes: int,
        attribute_limit: int,
        path_limit: int,
        plain_fragments: bool,
    ) -> None: ...
    def children(
        self,
        run: Any,
        el: Any,
        name: str,
        text_ok: bool,
        text_only: bool,
        scope_id: str | None,
        depth: int,
    ) -> dict[Any, bool] | None: ...
