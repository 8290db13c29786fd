"""Build hook: compile the sanitizer's optional accelerator (``_walk.pyx``) with Cython.

The sanitizer is complete without it (``_sanitizer.py`` falls back to the pure
walk when the module is missing or stale), so a failed compile is a warning,
not a failed install: the package then installs as pure Python. Set
``CHATSVG_NO_ACCELERATOR=1`` to skip the compile on purpose.

The editable install (``pip install -e .``) builds the module in place, next to
the ``.pyx`` (``src/chatsvg_core/sanitize/_walk.*.so``, git-ignored); re-run it
after changing the ``.pyx``. A wheel carries the module and a platform tag.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PYX = Path("src/chatsvg_core/sanitize/_walk.pyx")


def build_in_place(root: Path) -> Path:
    """Cythonize and compile ``_walk.pyx`` next to itself; return the module's path."""
    import lxml
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    source = root / PYX
    ext = Extension(
        "chatsvg_core.sanitize._walk",
        [str(source)],
        include_dirs=lxml.get_include(),
        extra_compile_args=["-O2"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        modules = cythonize(
            [ext], quiet=True, build_dir=tmp, compiler_directives={"language_level": "3"}
        )
        dist = Distribution({"ext_modules": modules, "package_dir": {"": str(root / "src")}})
        cmd: Any = dist.get_command_obj("build_ext")
        cmd.inplace = False
        cmd.build_lib = os.path.join(tmp, "lib")
        cmd.build_temp = os.path.join(tmp, "temp")
        cmd.ensure_finalized()
        cmd.run()
        (built,) = cmd.get_outputs()
        target = source.parent / Path(built).name
        for stale in source.parent.glob("_walk.*.so"):
            stale.unlink()
        shutil.copy2(built, target)
    return target


class AcceleratorHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if os.environ.get("CHATSVG_NO_ACCELERATOR", "") not in ("", "0"):
            return
        root = Path(self.root)
        try:
            built = build_in_place(root)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the pure package
            print(
                f"chatsvg-core: the sanitizer's accelerator was not built ({exc!r}); "
                "installing the pure-Python walk",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(built)] = str(built.relative_to(root / "src"))
