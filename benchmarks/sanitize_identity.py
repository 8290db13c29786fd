"""Byte-identical output check for sanitizer changes that must not change any result.

    python benchmarks/sanitize_identity.py --src /work/main/src --out before.jsonl
    python benchmarks/sanitize_identity.py --src src --out after.jsonl
    python benchmarks/sanitize_identity.py --compare before.jsonl after.jsonl

Runs the sanitizer over every file of ``tests/data/fidelity``, ``tests/data/xss``
and ``tests/data/model_answers``, as bytes and as str, as written and with the
root's namespace declarations taken out (so the pre-parse repair is exercised),
under every policy shape the tests use (presets, id prefixing, unconfined
styles, small limits). Each line records the output markup, or the refusal's
reason, detail and limit, the report as JSON, and ``is_blank`` of the
sanitized tree and of the markup (the engine's blank check). ``--compare`` exits non-zero
on the first difference, naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRS = ("tests/data/fidelity", "tests/data/xss", "tests/data/model_answers")
_DECLS = (b' xmlns="http://www.w3.org/2000/svg"', b' xmlns:xlink="http://www.w3.org/1999/xlink"')


def policies(policy_cls: type) -> dict[str, object]:
    default, strict = policy_cls.preset("default"), policy_cls.preset("strict")
    return {
        "default": default,
        "strict": strict,
        "default+prefix": default.extend(id_prefix="p0", link_schemes={"https"}),
        "strict+prefix": strict.extend(id_prefix="prep1"),
        "default-unconfined": default.extend(confine_styles=False),
        "default+small": default.extend(
            max_elements=50, max_attribute_length=60, max_path_length=100, max_depth=7
        ),
    }


def inputs() -> list[tuple[str, bytes]]:
    out = []
    for d in DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.is_file() and path.suffix in (".svg", ".txt"):
                raw = path.read_bytes()
                name = str(path.relative_to(ROOT))
                out.append((name, raw))
                stripped = raw
                for decl in _DECLS:
                    stripped = stripped.replace(decl, b"", 1)
                if stripped != raw:
                    out.append((name + "#no-xmlns", stripped))
    return out


def run(src: str, out: str) -> None:
    sys.path.insert(0, src)
    from chatsvg_core.errors import SVGRejected
    from chatsvg_core.sanitize import SanitizePolicy, Sanitizer, is_blank

    assert Path(sys.modules["chatsvg_core"].__file__ or "").is_relative_to(Path(src).resolve())
    with open(out, "w") as fh:
        for pname, policy in policies(SanitizePolicy).items():
            sanitizer = Sanitizer(policy)  # type: ignore[arg-type]
            for name, raw in inputs():
                try:
                    text: str | None = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                for kind, data in (("bytes", raw), ("str", text)):
                    if data is None:
                        continue
                    for rep in (
                        "first",
                        "again",
                    ):  # caches of clean values are warm the second time
                        record: dict[str, object] = {"policy": pname, "file": name, "kind": kind,
                                                     "rep": rep}  # fmt: skip
                        try:
                            result, tree = sanitizer._sanitize_tree(data)
                        except SVGRejected as exc:
                            record["rejected"] = [exc.reason, exc.detail, exc.limit, str(exc)]
                        else:
                            # The engine's blank check, on the tree and on the markup.
                            record["blank"] = [is_blank(tree), is_blank(result.svg)]
                            record["svg"] = result.svg
                            record["report"] = result.report.model_dump_json()
                            record["report_repr"] = repr(result.report)
                            record["changed"] = result.changed
                        fh.write(json.dumps(record, sort_keys=True) + "\n")


def compare(before: str, after: str) -> None:
    with open(before) as a, open(after) as b:
        lines_a, lines_b = a.readlines(), b.readlines()
    if len(lines_a) != len(lines_b):
        sys.exit(f"different number of records: {len(lines_a)} vs {len(lines_b)}")
    for la, lb in zip(lines_a, lines_b, strict=True):
        if la != lb:
            sys.exit(f"DIFFERENT:\n{la[:2000]}\n{lb[:2000]}")
    print(f"identical: {len(lines_a)} records")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", default=str(ROOT / "src"))
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2)
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args.src, args.out)


if __name__ == "__main__":
    main()
