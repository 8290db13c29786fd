"""Re-create the vendored fidelity corpus from the npm packages (a maintainer's tool).

    python tests/data/fidelity/vendor_corpus.py  # needs npm; writes tests/data/fidelity/<set>/

Installs the pinned icon sets into a temporary folder with npm, then copies a
deterministic subset of each, biased toward the features that sanitizers
break (gradients, masks, filters, clip paths, text, ``<use>``, ``<style>``).
Iconify JSON sets are turned into standalone SVG files (``viewBox`` from the
set's metadata). Licences and versions are in LICENSES.md.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

# package@version, how to list its SVGs, how many files, licence (SPDX)
SETS: dict[str, dict[str, object]] = {
    "simple-icons": {"pkg": "simple-icons@16.37.0", "glob": "icons/*.svg", "n": 30},
    "tabler": {"pkg": "@tabler/icons@3.52.0", "glob": "icons/*/*.svg", "n": 35},
    "bootstrap-icons": {"pkg": "bootstrap-icons@1.13.2", "glob": "icons/*.svg", "n": 30},
    "lucide": {"pkg": "lucide-static@1.62.0", "glob": "icons/*.svg", "n": 30},
    "flag-icons": {"pkg": "flag-icons@7.5.0", "glob": "flags/4x3/*.svg", "n": 55},
    "fluent-emoji": {"pkg": "@iconify-json/fluent-emoji@1.2.7", "iconify": True, "n": 55},
    "logos": {"pkg": "@iconify-json/logos@1.2.19", "iconify": True, "n": 45},
    "noto": {"pkg": "@iconify-json/noto@1.2.9", "iconify": True, "n": 25},
    "skill-icons": {"pkg": "@iconify-json/skill-icons@1.2.4", "iconify": True, "n": 20},
}

FEATURES = {
    "gradient": re.compile(r"<(linear|radial)Gradient"),
    "mask": re.compile(r"<mask"),
    "filter": re.compile(r"<filter"),
    "clip": re.compile(r"<clipPath"),
    "text": re.compile(r"<text"),
    "use": re.compile(r"<use"),
    "style": re.compile(r"<style|style="),
    "pattern": re.compile(r"<pattern"),
}


def features(svg: str) -> set[str]:
    """The sanitizer-relevant features a file uses."""
    return {name for name, rx in FEATURES.items() if rx.search(svg)}


def iconify_files(package_dir: Path) -> dict[str, str]:
    """Standalone SVG documents from an Iconify JSON set."""
    data = json.loads((package_dir / "icons.json").read_text())
    out: dict[str, str] = {}
    for name, icon in data["icons"].items():
        w = icon.get("width", data.get("width", 16))
        h = icon.get("height", data.get("height", 16))
        left, top = icon.get("left", data.get("left", 0)), icon.get("top", data.get("top", 0))
        # Iconify's own builder declares the XLink namespace when a body uses it.
        xlink = ' xmlns:xlink="http://www.w3.org/1999/xlink"' if "xlink:" in icon["body"] else ""
        out[name + ".svg"] = (
            f'<svg xmlns="http://www.w3.org/2000/svg"{xlink} width="{w}" height="{h}" '
            f'viewBox="{left} {top} {w} {h}">{icon["body"]}</svg>\n'
        )
    return out


def pick(files: dict[str, str], n: int, rng: random.Random) -> list[str]:
    """Half the quota from the files with the most features, the rest at random."""
    names = sorted(files)
    rng.shuffle(names)
    ranked = sorted(names, key=lambda k: -len(features(files[k])))
    chosen = ranked[: n // 2]
    rest = [k for k in names if k not in set(chosen)]
    chosen += rest[: n - len(chosen)]
    return sorted(chosen)


def main() -> None:
    rng = random.Random(20261125)
    with tempfile.TemporaryDirectory() as tmp:
        pkgs = [str(spec["pkg"]) for spec in SETS.values()]
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", tmp, *pkgs], check=True
        )
        for set_name, spec in SETS.items():
            pkg_name = str(spec["pkg"]).rsplit("@", 1)[0]
            pdir = Path(tmp) / "node_modules" / pkg_name
            if spec.get("iconify"):
                files = iconify_files(pdir)
            else:
                files = {
                    p.relative_to(pdir).as_posix().replace("/", "__"): p.read_text()
                    for p in sorted(pdir.glob(str(spec["glob"])))
                }
            target = HERE / set_name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for name in pick(files, int(str(spec["n"])), rng):
                (target / name.replace("icons__", "")).write_text(files[name])


if __name__ == "__main__":
    main()
