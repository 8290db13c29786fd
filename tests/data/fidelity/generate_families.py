"""Re-create the generated families of the fidelity corpus (a maintainer's tool).

    python tests/data/fidelity/generate_families.py [--only FAMILY ...]

Unlike the vendored icon sets (``vendor_corpus.py``), these files are *made*
here by the tools that produce most real-world SVG, from inputs written in this
file: graphviz (``dot -Tsvg``, Debian ``graphviz``), matplotlib, svg-term (npm
``svg-term-cli`` on asciicast recordings written below), mermaid (the npm
package rendered in headless Chromium), badges (PyPI ``pybadges``), avatars
(npm ``@dicebear/*`` styles under CC0/MIT, and ``jdenticon``) and inkscape
(Debian ``inkscape`` 1.2.2 editing and exporting drawings written below).
Versions are pinned here and recorded in LICENSES.md; the output is committed,
so CI needs none of these tools. Needs: ``dot``, ``npm``, ``inkscape``,
``/usr/bin/chromium``, and ``matplotlib``, ``pybadges`` and ``playwright`` in
the running Python (``--only inkscape`` needs ``inkscape`` alone).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
NPM = [
    "svg-term-cli@2.1.1",
    "mermaid@11.12.0",
    "@dicebear/core@9.2.4",
    "@dicebear/collection@9.2.4",
    "jdenticon@3.3.0",
]


def _write(family: str, files: dict[str, str]) -> None:
    out = HERE / family
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for name, svg in sorted(files.items()):
        (out / f"{name}.svg").write_text(svg, encoding="utf-8")
    print(f"{family}: {len(files)} files")


# --- graphviz ---------------------------------------------------------------

GRAPHS: dict[str, tuple[str, str]] = {
    "digraph-basic": ("dot", "digraph G { a -> b -> c; a -> c; b -> d; }"),
    "digraph-lr-records": (
        "dot",
        "digraph G { rankdir=LR; node [shape=record];"
        ' s [label="<f0> left|<f1> mid|<f2> right"]; t [label="{a|{b|c}|d}"];'
        " s:f1 -> t; s:f2 -> t; }",
    ),
    "clusters": (
        "dot",
        "digraph G { subgraph cluster_0 { style=filled; color=lightgrey; node"
        ' [style=filled,color=white]; a0 -> a1 -> a2; label="process #1"; }'
        ' subgraph cluster_1 { node [style=filled]; b0 -> b1 -> b2; label="process #2";'
        " color=blue } start -> a0; start -> b0; a1 -> b2; a2 -> end; b2 -> end;"
        " start [shape=Mdiamond]; end [shape=Msquare]; }",
    ),
    "html-label-table": (
        "dot",
        'digraph G { node [shape=plaintext]; t [label=<<TABLE BORDER="0" CELLBORDER="1"'
        ' CELLSPACING="0"><TR><TD BGCOLOR="#ffcc00">name</TD><TD>type</TD></TR>'
        '<TR><TD PORT="p">id</TD><TD><I>int</I></TD></TR><TR><TD COLSPAN="2">'
        "<B>primary key</B></TD></TR></TABLE>>]; u [shape=box,style=rounded]; t:p -> u; }",
    ),
    "gradients-styles": (
        "dot",
        'digraph G { bgcolor="white"; a [style=filled, fillcolor="orange:yellow"];'
        ' b [style="filled,dashed", fillcolor="lightblue", shape=ellipse];'
        ' c [style=radial, fillcolor="white:green"]; d [shape=doublecircle, penwidth=3];'
        ' a -> b [color="red:blue", arrowhead=diamond]; b -> c [style=dotted, label="dotted"];'
        " c -> d [arrowhead=vee, dir=both, arrowtail=inv]; }",
    ),
    "shapes": (
        "dot",
        'digraph G { node [style=filled, fillcolor="#e0e8ff"]; a [shape=box]; b'
        " [shape=hexagon]; c [shape=cylinder]; d [shape=folder]; e [shape=note]; f"
        " [shape=triangle]; g [shape=star]; h [shape=parallelogram]; a -> {b c d}; b -> {e f};"
        " d -> {g h}; }",
    ),
    "undirected-neato": ("neato", "graph G { a -- b -- c -- d -- a; a -- c; b -- e; e -- f; }"),
    "circo-ring": (
        "circo",
        "graph G { " + " ".join(f"n{i} -- n{(i + 1) % 12};" for i in range(12)) + " }",
    ),
    "twopi-radial": (
        "twopi",
        "digraph G { root=r; r -> {a b c d}; a -> {a1 a2}; c -> {c1 c2 c3}; }",
    ),
    "fdp-clusters": (
        "fdp",
        "graph G { e; subgraph clusterA { a -- b; subgraph clusterC { C -- D; } }"
        " subgraph clusterB { d -- f } d -- D; e -- clusterB; clusterC -- clusterB }",
    ),
    "edge-labels-fonts": (
        "dot",
        'digraph G { fontname="Helvetica"; label="A titled graph"; labelloc=t;'
        ' node [fontname="Courier", fontsize=10]; a -> b [label="10 ms", fontcolor=red];'
        ' b -> c [xlabel="x", headlabel="h", taillabel="t"]; }',
    ),
    "links-tooltips": (
        "dot",
        'digraph G { a [URL="https://graphviz.org/", tooltip="home"]; b [URL="#c"];'
        ' c [id="c"]; a -> b [URL="https://example.com/e", edgetooltip="edge"]; b -> c; }',
    ),
    "state-machine": (
        "dot",
        "digraph fsm { rankdir=LR; node [shape=doublecircle]; LR_0 LR_3 LR_4 LR_8;"
        ' node [shape=circle]; LR_0 -> LR_2 [label="SS(B)"]; LR_0 -> LR_1 [label="SS(S)"];'
        ' LR_1 -> LR_3 [label="S($end)"]; LR_2 -> LR_6 [label="SS(b)"];'
        ' LR_2 -> LR_5 [label="SS(a)"]; LR_2 -> LR_4 [label="S(A)"];'
        ' LR_5 -> LR_7 [label="S(b)"]; LR_5 -> LR_5 [label="S(a)"];'
        ' LR_6 -> LR_6 [label="S(b)"]; LR_6 -> LR_5 [label="S(a)"];'
        ' LR_7 -> LR_8 [label="S(b)"]; LR_7 -> LR_5 [label="S(a)"];'
        ' LR_8 -> LR_6 [label="S(b)"]; LR_8 -> LR_5 [label="S(a)"]; }',
    ),
    "unicode-labels": (
        "dot",
        'digraph G { a [label="café ☕"]; b [label="λ → μ"]; c [label="日本語"]; a -> b -> c; }',
    ),
    "splines-ortho": (
        "dot",
        "digraph G { splines=ortho; node [shape=box]; a -> {b c d}; b -> e; c -> e; d -> e; }",
    ),
    "rank-same": (
        "dot",
        "digraph G { {rank=same; b; c; d} a -> b; a -> c; a -> d; b -> c [constraint=false]; }",
    ),
}


def _random_graph(seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    n = rng.randint(5, 12)
    colors = ["#fbb4ae", "#b3cde3", "#ccebc5", "#decbe4", "#fed9a6", "#ffffcc"]
    shapes = ["box", "ellipse", "circle", "diamond", "octagon", "component"]
    lines = [
        f'n{i} [shape={rng.choice(shapes)}, style=filled, fillcolor="{rng.choice(colors)}"];'
        for i in range(n)
    ]
    for _ in range(n + rng.randint(0, n)):
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b:
            lines.append(f"n{a} -> n{b};")
    return rng.choice(["dot", "dot", "neato"]), "digraph G { " + " ".join(lines) + " }"


def graphviz() -> dict[str, str]:
    graphs = dict(GRAPHS)
    for seed in range(8):
        graphs[f"random-{seed}"] = _random_graph(seed)
    out = {}
    for name, (engine, source) in graphs.items():
        svg = subprocess.run(
            [engine, "-Tsvg"], input=source.encode(), capture_output=True, check=True
        ).stdout.decode()
        out[name] = svg
    return out


# --- matplotlib -------------------------------------------------------------


def matplotlib_figures() -> dict[str, str]:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plt.rcParams.update(
        {"svg.hashsalt": "chatsvg", "figure.figsize": (3, 2.25), "font.size": 8, "figure.dpi": 72}
    )
    rng = np.random.default_rng(17)
    x = np.linspace(0, 2 * np.pi, 60)

    def line(ax: object) -> None:
        ax.plot(x, np.sin(x), "-o", markevery=6, label="sin")  # type: ignore[attr-defined]
        ax.plot(x, np.cos(x), "--", label="cos")  # type: ignore[attr-defined]
        ax.legend()  # type: ignore[attr-defined]
        ax.set_title("lines and markers")  # type: ignore[attr-defined]

    def scatter(ax: object) -> None:
        ax.scatter(
            rng.normal(size=80),
            rng.normal(size=80),
            c=rng.random(80),
            s=20,  # type: ignore[attr-defined]
            cmap="viridis",
            alpha=0.7,
        )

    def bars(ax: object) -> None:
        ax.bar(
            ["a", "b", "c", "d"],
            [3, 7, 2, 5],
            color=["C0", "C1", "C2", "C3"],  # type: ignore[attr-defined]
            hatch="//",
            edgecolor="black",
        )

    def hist(ax: object) -> None:
        ax.hist(rng.normal(size=500), bins=20, histtype="stepfilled", alpha=0.6)  # type: ignore[attr-defined]
        ax.grid(True, linestyle=":")  # type: ignore[attr-defined]

    def pie(ax: object) -> None:
        ax.pie(
            [35, 25, 25, 15],
            labels=["w", "x", "y", "z"],
            autopct="%1.0f%%",  # type: ignore[attr-defined]
            explode=[0.1, 0, 0, 0],
            shadow=True,
        )

    def image(ax: object) -> None:
        ax.imshow(rng.random((12, 12)), cmap="magma", interpolation="nearest")  # type: ignore[attr-defined]

    def contour(ax: object) -> None:
        gx, gy = np.meshgrid(np.linspace(-2, 2, 40), np.linspace(-2, 2, 40))
        z = np.exp(-(gx**2) - gy**2) - np.exp(-((gx - 1) ** 2) - (gy - 1) ** 2)
        ax.contourf(gx, gy, z, levels=8, cmap="RdBu")  # type: ignore[attr-defined]
        ax.contour(gx, gy, z, levels=8, colors="k", linewidths=0.5)  # type: ignore[attr-defined]

    def errorbars(ax: object) -> None:
        xs = np.arange(6)
        ax.errorbar(xs, xs**1.5, yerr=0.5 + xs * 0.2, fmt="s", capsize=3)  # type: ignore[attr-defined]
        ax.fill_between(xs, xs**1.5 - 1, xs**1.5 + 1, alpha=0.2)  # type: ignore[attr-defined]

    def mathtext(ax: object) -> None:
        ax.text(0.1, 0.5, r"$\int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}$", fontsize=12)  # type: ignore[attr-defined]
        ax.annotate(
            "peak",
            xy=(0.7, 0.8),
            xytext=(0.3, 0.2),  # type: ignore[attr-defined]
            arrowprops={"arrowstyle": "->", "connectionstyle": "arc3,rad=.3"},
        )
        ax.set_axis_off()  # type: ignore[attr-defined]

    def logscale(ax: object) -> None:
        ax.loglog(x + 0.1, np.exp(x), marker="^", markersize=3)  # type: ignore[attr-defined]

    def step_stem(ax: object) -> None:
        ax.step(np.arange(10), rng.integers(0, 5, 10), where="mid")  # type: ignore[attr-defined]
        ax.stem(np.arange(10), rng.random(10))  # type: ignore[attr-defined]

    def boxplot(ax: object) -> None:
        ax.boxplot([rng.normal(0, s, 60) for s in (1, 2, 3)], patch_artist=True)  # type: ignore[attr-defined]

    plots: dict[str, Callable[[object], None]] = {
        "line-legend": line,
        "scatter-alpha": scatter,
        "bars-hatch": bars,
        "hist-grid": hist,
        "pie-shadow": pie,
        "imshow-raster": image,
        "contour-filled": contour,
        "errorbar-fill": errorbars,
        "mathtext-annotate": mathtext,
        "loglog-markers": logscale,
        "step-stem": step_stem,
        "boxplot": boxplot,
    }
    out = {}
    for name, draw in plots.items():
        fig, ax = plt.subplots()
        draw(ax)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
        out[name] = buf.getvalue()
    # Text kept as text (not paths), and a polar plot with two subplots.
    with plt.rc_context({"svg.fonttype": "none"}):
        fig, ax = plt.subplots()
        line(ax)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        plt.close(fig)
        out["fonttype-none"] = buf.getvalue()
    fig = plt.figure()
    ax1 = fig.add_subplot(121, projection="polar")
    ax1.plot(x, 1 + np.sin(3 * x))
    ax2 = fig.add_subplot(122)
    ax2.barh(["p", "q"], [2, 3])
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    out["polar-subplots"] = buf.getvalue()
    return out


# --- svg-term -----------------------------------------------------------------

ESC = "\u001b["


def _cast(width: int, height: int, frames: list[tuple[float, str]]) -> str:
    header = json.dumps(
        {
            "version": 2,
            "width": width,
            "height": height,
            "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        }
    )
    return "\n".join([header, *(json.dumps([t, "o", s]) for t, s in frames)]) + "\n"


def _prompt(cmd: str) -> str:
    return f"{ESC}1;32muser@host{ESC}0m:{ESC}34m~/proj{ESC}0m$ {cmd}\r\n"


CASTS: dict[str, tuple[str, list[str]]] = {
    "ls-colors": (
        _cast(
            48,
            8,
            [
                (0.2, _prompt("ls --color")),
                (
                    0.6,
                    f"{ESC}1;34msrc{ESC}0m  {ESC}1;34mtests{ESC}0m  README.md  "
                    f"{ESC}1;32mrun.sh{ESC}0m\r\n",
                ),
                (1.0, _prompt("")),
            ],
        ),
        [],
    ),
    "pytest-run": (
        _cast(
            56,
            10,
            [
                (0.1, _prompt("pytest -q")),
                (0.8, f"{ESC}32m........{ESC}0m{ESC}31mF{ESC}0m{ESC}32m...{ESC}0m\r\n"),
                (1.4, f"{ESC}31m{ESC}1mFAILED{ESC}0m tests/test_x.py::test_y\r\n"),
                (1.8, f"{ESC}31m1 failed{ESC}0m, {ESC}32m11 passed{ESC}0m in 0.4s\r\n"),
            ],
        ),
        [],
    ),
    "git-log": (
        _cast(
            60,
            8,
            [
                (0.1, _prompt("git log --oneline -3")),
                (
                    0.5,
                    f"{ESC}33m3b57598{ESC}0m ({ESC}1;36mHEAD -> {ESC}1;32mmain{ESC}0m)"
                    " merge main\r\n",
                ),
                (0.6, f"{ESC}33m5c0c9c6{ESC}0m browser proof\r\n"),
                (0.7, f"{ESC}33m410c4cf{ESC}0m review\r\n"),
            ],
        ),
        [],
    ),
    "bg-colors-256": (
        _cast(
            40,
            6,
            [
                (0.1, "".join(f"{ESC}48;5;{i}m  " for i in range(16)) + f"{ESC}0m\r\n"),
                (0.3, "".join(f"{ESC}38;5;{i}m#" for i in range(196, 232)) + f"{ESC}0m\r\n"),
                (
                    0.5,
                    f"{ESC}1mbold{ESC}0m {ESC}3mitalic{ESC}0m {ESC}4munder{ESC}0m"
                    f" {ESC}7mreverse{ESC}0m\r\n",
                ),
            ],
        ),
        [],
    ),
    "progress-bar": (
        _cast(
            50,
            4,
            [
                (0.1 * i, f"\r{ESC}36m[" + "#" * i + " " * (20 - i) + f"]{ESC}0m {i * 5}%")
                for i in range(21)
            ],
        ),
        [],
    ),
    "unicode-box": (
        _cast(
            40,
            7,
            [
                (0.1, "┌──────────┐\r\n│ héllo ✓  │\r\n└──────────┘\r\n"),
                (0.4, f"{ESC}35m→ λ ∑ ≠ ∞{ESC}0m\r\n"),
            ],
        ),
        [],
    ),
}


def svg_term(node_modules: Path) -> dict[str, str]:
    cli = node_modules / "svg-term-cli" / "lib" / "cli.js"
    variants: dict[str, list[str]] = {
        "anim": [],
        "anim-window": ["--window"],
        "still-window": ["--window", "--at", "3000"],
        "anim-padded": ["--padding", "4", "--no-cursor"],
    }
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (cast, _)) in enumerate(CASTS.items()):
            src = Path(tmp) / f"{name}.cast"
            src.write_text(cast)
            # Two variants per recording (of four, in turn): about a dozen files.
            for variant in list(variants)[i % 2 :: 2]:
                dst = Path(tmp) / f"{name}-{variant}.svg"
                subprocess.run(
                    ["node", str(cli), "--in", str(src), "--out", str(dst), *variants[variant]],
                    check=True,
                )
                out[f"{name}-{variant}"] = dst.read_text()
    return out


# --- mermaid (rendered in Chromium) ---------------------------------------------

DIAGRAMS: dict[str, str] = {
    "flowchart-td": "flowchart TD\n A[Start] --> B{Is it?}\n B -->|Yes| C[OK]\n C --> D[Rethink]\n"
    " D --> B\n B ---->|No| E[End]",
    "flowchart-lr-shapes": "flowchart LR\n a([stadium]) --> b[[sub]] --> c[(db)] --> d((circle))\n"
    " d -.-> e>flag] ==> f{{hex}}",
    "flowchart-subgraphs": "flowchart TB\n c1-->a2\n subgraph one\n a1-->a2\n end\n"
    " subgraph two\n b1-->b2\n end\n one --> two",
    "sequence": "sequenceDiagram\n participant A as Alice\n participant B as Bob\n A->>B: Hello\n"
    " B-->>A: Hi\n Note right of B: thinks\n loop Every minute\n A-)B: ping\n end",
    "sequence-activation": "sequenceDiagram\n autonumber\n Client->>+API: POST /jobs\n"
    " API->>+DB: insert\n DB-->>-API: id\n API-->>-Client: 202\n alt failed\n"
    " API->>Client: 500\n else ok\n API->>Client: 200\n end",
    "class": "classDiagram\n Animal <|-- Duck\n Animal <|-- Fish\n Animal : +int age\n"
    " Animal: +isMammal()\n class Duck{\n +String beakColor\n +swim()\n }",
    "state": "stateDiagram-v2\n [*] --> Still\n Still --> [*]\n Still --> Moving\n"
    " Moving --> Still\n Moving --> Crash\n Crash --> [*]",
    "er": "erDiagram\n CUSTOMER ||--o{ ORDER : places\n ORDER ||--|{ LINE-ITEM : contains\n"
    " CUSTOMER { string name\n string email }",
    "gantt": "gantt\n title Plan\n dateFormat YYYY-MM-DD\n section A\n Design :a1, 2024-01-01, 5d\n"
    " Build :after a1, 10d\n section B\n Test :2024-01-10, 6d",
    "pie": 'pie title Pets\n "Dogs" : 386\n "Cats" : 85\n "Rats" : 15',
    "journey": "journey\n title My day\n section Go to work\n Make tea: 5: Me\n"
    " Go upstairs: 3: Me\n section Go home\n Sit down: 5: Me",
    "gitgraph": "gitGraph\n commit\n branch develop\n checkout develop\n commit\n commit\n"
    " checkout main\n merge develop\n commit",
    "timeline": "timeline\n title History\n 2002 : LinkedIn\n 2004 : Facebook : Google\n"
    " 2005 : YouTube",
    "quadrant": "quadrantChart\n title Reach\n x-axis Low --> High\n y-axis Low --> High\n"
    " quadrant-1 Expand\n quadrant-2 Promote\n quadrant-3 Re-evaluate\n quadrant-4 Improve\n"
    " A: [0.3, 0.6]\n B: [0.45, 0.23]",
    "xychart": "xychart-beta\n title Sales\n x-axis [jan, feb, mar, apr]\n y-axis 0 --> 100\n"
    " bar [20, 50, 70, 40]\n line [20, 50, 70, 40]",
    "mindmap": "mindmap\n root((svg))\n  sanitize\n   css\n   urls\n  render\n   chromium",
}


def mermaid(node_modules: Path) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    script = (node_modules / "mermaid" / "dist" / "mermaid.min.js").read_text()
    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(content=script)
        # htmlLabels off: labels as SVG <text>. With HTML labels mermaid draws them in
        # <foreignObject>, which every sanitizer here removes (HTML inside SVG).
        page.evaluate("""() => mermaid.initialize({startOnLoad: false, securityLevel: 'strict',
            htmlLabels: false, flowchart: {htmlLabels: false}, class: {htmlLabels: false},
            state: {htmlLabels: false}, fontFamily: 'DejaVu Sans, sans-serif'})""")
        for i, (name, text) in enumerate(DIAGRAMS.items()):
            svg = page.evaluate(
                "([id, t]) => mermaid.render(id, t).then(r => r.svg)", [f"mermaid-{i}", text]
            )
            out[name] = svg
        browser.close()
    return out


# --- badges and avatars ---------------------------------------------------------


# An 8x8 PNG (a checker), embedded as the badge's logo.
LOGO_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFklEQVR4nGNgYPiP"
    "BTHgEh6VGNkSADwbP8GPfHNzAAAAAElFTkSuQmCC"
)


def badges() -> dict[str, str]:
    import pybadges

    specs = [
        ("build", "passing", "#4c1", {}),
        ("coverage", "87%", "yellowgreen", {}),
        ("pypi", "v0.1.0", "blue", {}),
        ("license", "MIT", "#007ec6", {"left_color": "#555"}),
        ("tests", "1 failed", "red", {}),
        ("docs", "latest", "brightgreen", {"left_link": "https://example.com/docs"}),
        ("chat", "on matrix", "#0dbd8b", {"whole_link": "https://example.com/chat"}),
        (
            "python",
            "3.11 | 3.12",
            "#3776ab",
            {
                "logo": LOGO_PNG,
                "embed_logo": False,
            },
        ),
        ("downloads", "12k/month", "orange", {}),
        ("style", "flat", "#e05d44", {"left_title": "left", "right_title": "right"}),
        ("ünïcode", "✓ ok", "green", {}),
        ("very long label for width", "x", "lightgrey", {}),
    ]
    out = {}
    for i, (left, right, color, extra) in enumerate(specs):
        out[f"badge-{i:02d}-{left.split()[0].encode('ascii', 'ignore').decode() or 'u'}"] = (
            pybadges.badge(left_text=left, right_text=right, right_color=color, **extra)
        )
    return out


AVATAR_STYLES = [
    "identicon",
    "initials",
    "shapes",
    "rings",
    "thumbs",
    "glass",
    "pixelArt",
    "lorelei",
    "notionists",
    "icons",
    "openPeeps",
]


def avatars(node_modules: Path) -> dict[str, str]:
    js = """
const {createAvatar} = require('@dicebear/core');
const collection = require('@dicebear/collection');
const jdenticon = require('jdenticon');
const styles = %s;
const out = {};
styles.forEach((name, i) => {
  const style = collection[name];
  const lic = style.meta.license.name;
  if (!/^(CC0 1\\.0|MIT)$/.test(lic)) throw new Error(name + ' is ' + lic);
  for (const seed of ['ada', 'linus']) {
    out[`dicebear-${name}-${seed}`] = createAvatar(style, {seed, size: 96}).toString();
  }
});
for (const seed of ['chatsvg', 'graphviz', 'mermaid']) {
  out[`jdenticon-${seed}`] = jdenticon.toSvg(seed, 96);
}
process.stdout.write(JSON.stringify(out));
""".replace("%s", json.dumps(AVATAR_STYLES))
    result = subprocess.run(
        ["node", "-e", js],
        capture_output=True,
        check=True,
        text=True,
        env={"NODE_PATH": str(node_modules), "PATH": "/usr/bin:/bin"},
    )
    files: dict[str, str] = json.loads(result.stdout)
    for name, svg in files.items():
        if name.startswith("jdenticon") and "xmlns=" not in svg:
            # jdenticon's string output is for HTML; a file needs the namespace.
            files[name] = svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    return files


# --- inkscape ----------------------------------------------------------------

# Drawings written in Inkscape's own dialect (what a saved .svg holds: layers,
# sodipodi:namedview, sodipodi:type shapes whose ``d`` Inkscape computes, RDF
# metadata, stock markers and filters), then edited by Inkscape's command-line
# actions (transforms, clones, clip/mask/pattern from the selection) and
# exported twice: as Inkscape SVG (the editor's own namespaces kept) and as
# plain SVG. What the files hold is Inkscape's serialisation, not ours.
INKSCAPE_HEAD = (
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    ' xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"'
    ' xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"'
    ' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    ' xmlns:cc="http://creativecommons.org/ns#" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' width="100mm" height="100mm" viewBox="0 0 100 100" version="1.1" id="svg1"'
    ' inkscape:version="1.2.2 (b0a8486541, 2022-12-01)" sodipodi:docname="{name}.svg">'
    '<sodipodi:namedview id="namedview1" pagecolor="#ffffff" bordercolor="#000000"'
    ' borderopacity="0.25" inkscape:showpageshadow="2" inkscape:pageopacity="0.0"'
    ' inkscape:pagecheckerboard="0" inkscape:deskcolor="#d1d1d1" inkscape:document-units="mm"'
    ' showgrid="true" inkscape:zoom="1.5" inkscape:cx="180" inkscape:cy="190"'
    ' inkscape:current-layer="layer1"><inkscape:grid type="xygrid" id="grid1"'
    ' originx="0" originy="0" spacingx="5" spacingy="5"/>'
    '<sodipodi:guide position="50,50" orientation="0,-1" id="guide1" inkscape:locked="false"/>'
    "</sodipodi:namedview>"
    '<metadata id="metadata1"><rdf:RDF><cc:Work rdf:about="">'
    "<dc:format>image/svg+xml</dc:format>"
    '<dc:type rdf:resource="http://purl.org/dc/dcmitype/StillImage"/>'
    "<dc:title>{name}</dc:title><dc:creator><cc:Agent><dc:title>chatsvg-core</dc:title>"
    "</cc:Agent></dc:creator>"
    '<cc:license rdf:resource="http://creativecommons.org/publicdomain/zero/1.0/"/>'
    "</cc:Work></rdf:RDF></metadata>"
)
ARROW_MARKER = (
    '<marker style="overflow:visible" id="Arrow1Lend" refX="0" refY="0" orient="auto"'
    ' inkscape:stockid="Arrow1Lend" inkscape:isstock="true"><path'
    ' transform="matrix(-0.8,0,0,-0.8,-10,0)"'
    ' style="fill:context-stroke;fill-rule:evenodd;stroke:context-stroke;stroke-width:1pt"'
    ' d="M 0,0 5,-5 -12.5,0 5,5 Z" id="pathArrow1"/></marker>'
    '<marker style="overflow:visible" id="DotM" refX="0" refY="0" orient="auto"'
    ' inkscape:stockid="DotM" inkscape:isstock="true"><path'
    ' transform="matrix(0.4,0,0,0.4,2.96,0.4)"'
    ' style="fill:#800000;fill-rule:evenodd;stroke:#800000;stroke-width:1pt"'
    ' d="m -2.5,-1 c 0,2.76 -2.24,5 -5,5 -2.76,0 -5,-2.24 -5,-5 0,-2.76 2.24,-5 5,-5 2.76,0 5,2.24'
    ' 5,5 z"'
    ' id="pathDot1"/></marker>'
)
INKSCAPE_DRAWINGS: dict[str, tuple[str, str, str]] = {
    # name -> (defs, body, actions run before export)
    "layers-shapes": (
        "",
        '<g inkscape:groupmode="layer" inkscape:label="Background" id="layer0"'
        ' sodipodi:insensitive="true"><rect style="fill:#f4f1de;stroke:none" id="rect1" width="96"'
        ' height="96" x="2" y="2" rx="6" ry="6"/></g>'
        '<g inkscape:groupmode="layer" inkscape:label="Shapes" id="layer1">'
        '<path sodipodi:type="arc" style="fill:#e07a5f;stroke:#3d405b;stroke-width:1.5" id="pie1"'
        ' sodipodi:cx="30" sodipodi:cy="30" sodipodi:rx="20" sodipodi:ry="20" sodipodi:start="0.5"'
        ' sodipodi:end="5.8" sodipodi:arc-type="slice" d=""/>'
        '<path sodipodi:type="arc" style="fill:none;stroke:#3d405b;stroke-width:2" id="arc1"'
        ' sodipodi:cx="70" sodipodi:cy="30" sodipodi:rx="18" sodipodi:ry="10" sodipodi:start="3.2"'
        ' sodipodi:end="6.1" sodipodi:open="true" sodipodi:arc-type="arc" d=""/>'
        '<path sodipodi:type="star" style="fill:#81b29a;stroke:#3d405b;stroke-width:1" id="star1"'
        ' sodipodi:sides="6" sodipodi:cx="30" sodipodi:cy="72" sodipodi:r1="18" sodipodi:r2="9"'
        ' sodipodi:arg1="0.52" sodipodi:arg2="1.05" inkscape:flatsided="false"'
        ' inkscape:rounded="0.2" inkscape:randomized="0" d=""'
        ' inkscape:transform-center-x="0.5" inkscape:transform-center-y="-0.3"/>'
        '<path sodipodi:type="spiral" style="fill:none;stroke:#3d405b;stroke-width:1.2"'
        ' id="spiral1"'
        ' sodipodi:cx="72" sodipodi:cy="72" sodipodi:expansion="1" sodipodi:revolution="3"'
        ' sodipodi:radius="16" sodipodi:argument="-18" sodipodi:t0="0" d=""/>'
        '<path style="fill:#f2cc8f;stroke:#3d405b;stroke-width:0.8" id="blob1"'
        ' d="m 52,48 a 8,5 30 1 0 14,6 a 4,4 0 0 1 -6,-8 z"'
        ' sodipodi:nodetypes="ccc" inkscape:connector-curvature="0"/></g>'
        '<g inkscape:groupmode="layer" inkscape:label="Hidden sketch" id="layer2"'
        ' style="display:none"><circle style="fill:#ff0000" id="circle9" cx="50" cy="50"'
        ' r="40"/></g>',
        "select-by-id:pie1,arc1,star1,spiral1;transform-translate:0.5,0.5;"
        "select-clear;select-by-id:star1;duplicate;transform-rotate:20",
    ),
    "gradients": (
        '<linearGradient inkscape:collect="always" id="linearGradient1">'
        '<stop style="stop-color:#3a86ff;stop-opacity:1" offset="0" id="stop1"/>'
        '<stop style="stop-color:#ff006e;stop-opacity:0.8" offset="1" id="stop2"/></linearGradient>'
        '<linearGradient inkscape:collect="always" xlink:href="#linearGradient1"'
        ' id="linearGradient2"'
        ' x1="10" y1="10" x2="90" y2="40" gradientUnits="userSpaceOnUse"/>'
        '<linearGradient inkscape:collect="always" xlink:href="#linearGradient2"'
        ' id="linearGradient3"'
        ' gradientTransform="rotate(45,50,50)" x1="10" y1="50" x2="90" y2="50"/>'
        '<radialGradient inkscape:collect="always" xlink:href="#linearGradient1"'
        ' id="radialGradient1"'
        ' cx="50" cy="75" fx="40" fy="70" r="22" gradientUnits="userSpaceOnUse"'
        ' gradientTransform="matrix(1.4,0,0,0.8,-20,15)"/>'
        '<linearGradient id="linearGradient4" inkscape:swatch="solid">'
        '<stop style="stop-color:#fb5607;stop-opacity:1" offset="0" id="stop4"/></linearGradient>',
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<rect style="fill:url(#linearGradient2);stroke:url(#linearGradient4);stroke-width:2"'
        ' id="rect2" width="80" height="30" x="10" y="10" ry="4"/>'
        '<rect style="fill:url(#linearGradient3);fill-opacity:1" id="rect3" width="36" height="24"'
        ' x="12" y="44"/>'
        '<ellipse style="fill:url(#radialGradient1)" id="ellipse1" cx="50" cy="78" rx="38"'
        ' ry="16"/>'
        '<circle style="fill:url(#linearGradient2);stroke:#222;stroke-width:0.5" id="circle2"'
        ' cx="72" cy="56" r="12"/></g>',
        # Moving a gradient-filled object makes Inkscape fork and rewrite its gradients.
        "select-by-id:rect3;transform-rotate:15;select-clear;"
        "select-by-id:circle2;transform-scale:1.2",
    ),
    "filters": (
        '<filter inkscape:collect="always" style="color-interpolation-filters:sRGB"'
        ' id="filterBlur" x="-0.3" y="-0.3" width="1.6" height="1.6">'
        '<feGaussianBlur inkscape:collect="always" stdDeviation="3" id="feGaussianBlur1"/></filter>'
        '<filter style="color-interpolation-filters:sRGB" inkscape:label="Drop Shadow"'
        ' id="filterShadow" x="-0.2" y="-0.2" width="1.5" height="1.5">'
        '<feFlood flood-opacity="0.5" flood-color="rgb(0,0,0)" result="flood" id="feFlood1"/>'
        '<feComposite in="flood" in2="SourceGraphic" operator="in" result="composite1"'
        ' id="feComposite1"/><feGaussianBlur in="composite1" stdDeviation="1.5" result="blur"'
        ' id="feGaussianBlur2"/><feOffset dx="2" dy="2.5" result="offset" id="feOffset1"/>'
        '<feComposite in="SourceGraphic" in2="offset" operator="over" result="composite2"'
        ' id="feComposite2"/></filter>'
        '<filter style="color-interpolation-filters:sRGB" inkscape:label="Colorize"'
        ' id="filterColor" x="0" y="0" width="1" height="1">'
        '<feColorMatrix type="hueRotate" values="90" result="color1" id="feColorMatrix1"/>'
        '<feComposite in2="SourceGraphic" operator="arithmetic" k1="0" k2="0.6" k3="0.4" k4="0"'
        ' id="feComposite3"/></filter>',
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<circle style="fill:#8338ec;filter:url(#filterBlur)" id="circle1" cx="28" cy="28" r="16"/>'
        '<rect style="fill:#ffbe0b;stroke:#333;stroke-width:1;filter:url(#filterShadow)" id="rect1"'
        ' width="36" height="28" x="52" y="14" rx="3"/>'
        '<g id="g1" style="filter:url(#filterColor)" inkscape:label="tinted">'
        '<rect style="fill:#3a86ff" id="rect2" width="30" height="30" x="14" y="56"/>'
        '<path style="fill:#ff006e" id="path1" d="M 60,86 70,56 80,86 Z"/></g></g>',
        "select-by-id:rect1;transform-translate:2,2",
    ),
    "clones-markers": (
        ARROW_MARKER,
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<path style="fill:none;stroke:#264653;stroke-width:1.2;marker-end:url(#Arrow1Lend)"'
        ' d="M 10,20 C 30,5 50,35 80,18" id="curve1" sodipodi:nodetypes="cc"/>'
        '<path style="fill:none;stroke:#e76f51;stroke-width:1;marker-start:url(#DotM);'
        'marker-mid:url(#DotM);marker-end:url(#Arrow1Lend)"'
        ' d="m 12,40 a 12,8 0 0 1 20,4 l 18,-6 a 10,10 0 1 0 30,4" id="arcs1"/>'
        '<path sodipodi:type="star" style="fill:#2a9d8f;stroke:#264653;stroke-width:0.8"'
        ' id="star1" sodipodi:sides="5" sodipodi:cx="25" sodipodi:cy="72" sodipodi:r1="14"'
        ' sodipodi:r2="6" sodipodi:arg1="-1.57" sodipodi:arg2="-0.94" inkscape:flatsided="false"'
        ' inkscape:rounded="0" inkscape:randomized="0" d=""/></g>',
        # A clone, a clone of that clone (an xlink:href chain of <use>), each moved.
        "select-by-id:star1;transform-translate:0.5,0;clone;transform-translate:90,0;clone;transform-translate:90,-20"
        ";"
        "transform-rotate:30",
    ),
    "text": (
        '<path id="textArc" style="fill:none;stroke:#bbb;stroke-width:0.3"'
        ' d="M 10,88 A 40,22 0 0 1 90,88"/>'
        '<rect id="frame1" x="52" y="8" width="42" height="36" style="fill:none"/>',
        '<g inkscape:groupmode="layer" inkscape:label="Text" id="layer1">'
        '<text xml:space="preserve" style="font-size:9px;line-height:1.25;font-family:\'DejaVu'
        " Sans';"
        'fill:#1d3557" x="6" y="14" id="text1"><tspan sodipodi:role="line" id="tspan1" x="6"'
        ' y="14">Title line</tspan><tspan sodipodi:role="line" id="tspan2" x="6" y="25.25"'
        ' style="font-weight:bold;fill:#e63946">bold <tspan style="font-style:italic"'
        ' id="tspan3">mixed</tspan></tspan></text>'
        '<text xml:space="preserve" style="font-size:6px;line-height:1.25;font-family:\'DejaVu'
        " Sans';"
        'white-space:pre;shape-inside:url(#frame1);fill:#457b9d" id="flow1">'
        "Flowed into a frame: Inkscape wraps these words itself.</text>"
        '<text xml:space="preserve" style="font-size:5px;font-family:\'DejaVu Sans\';'
        'letter-spacing:0.6px;word-spacing:1px;fill:#2a9d8f" x="6" y="52" id="text2"'
        ' transform="rotate(-8,6,52)"><tspan sodipodi:role="line" id="tspan4" x="6" y="52">'
        "spaced &amp; rotated</tspan></text>"
        '<use xlink:href="#textArc" id="arcShown"/>'
        '<text style="font-size:7px;font-family:\'DejaVu Sans\';fill:#6d597a" id="text3">'
        '<textPath xlink:href="#textArc" startOffset="8%" id="textPath1">on an arc, by'
        " path</textPath>"
        "</text></g>",
        # Moving the flowed text makes Inkscape lay it out and write the SVG 1.1 fallback.
        "select-by-id:flow1;transform-translate:0.1,0",
    ),
    "clip-mask-pattern": (
        '<pattern inkscape:collect="always" patternUnits="userSpaceOnUse" width="2" height="1"'
        ' patternTransform="rotate(45) scale(2)" id="Stripes1" inkscape:stockid="Stripes 1:1"'
        ' inkscape:isstock="true"><rect style="fill:#6a4c93;stroke:none" x="0" y="-0.5" width="1"'
        ' height="2" id="rectStripe"/></pattern>',
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<rect style="fill:url(#Stripes1);stroke:#6a4c93;stroke-width:0.5" id="rect1" width="40"'
        ' height="40" x="6" y="6"/>'
        '<g id="picture1"><rect style="fill:#ff595e" width="40" height="40" x="54" y="6" id="r1"/>'
        '<rect style="fill:#1982c4" width="20" height="40" x="74" y="6" id="r2"/></g>'
        '<path sodipodi:type="star" style="fill:#ffffff" id="clipStar" sodipodi:sides="5"'
        ' sodipodi:cx="74" sodipodi:cy="26" sodipodi:r1="19" sodipodi:r2="8" sodipodi:arg1="-1.57"'
        ' sodipodi:arg2="-0.94" inkscape:flatsided="false" inkscape:rounded="0"'
        ' inkscape:randomized="0" d=""/>'
        '<rect style="fill:#8ac926" width="40" height="40" x="6" y="54" id="masked1"/>'
        '<circle style="fill:url(#maskGrad)" cx="26" cy="74" r="18" id="maskCircle"/>'
        '<circle style="fill:#ffca3a;stroke:#333;stroke-width:0.5" cx="66" cy="66" r="5"'
        ' id="dot1"/></g>',
        # Clip and mask made by Inkscape from the selection (topmost object is the
        # clip or mask), and a pattern made from an object.
        "select-by-id:picture1,clipStar;object-set-clip;select-clear;"
        "select-by-id:masked1,maskCircle;object-set-mask;select-clear;"
        "select-by-id:dot1;object-to-pattern",
    ),
}


def _inkscape_source(name: str, defs: str, body: str) -> str:
    head = INKSCAPE_HEAD.replace("{name}", name)
    grad = ""
    if name == "clip-mask-pattern":
        grad = (
            '<radialGradient id="maskGrad" cx="26" cy="74" r="18" gradientUnits="userSpaceOnUse">'
            '<stop offset="0" stop-color="#fff"/><stop offset="1" stop-color="#000"/>'
            "</radialGradient>"
        )
    return f'{head}<defs id="defs1">{defs}{grad}</defs>{body}</svg>\n'


def inkscape() -> dict[str, str]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Inkscape writes its preferences under $HOME; keep the maintainer's untouched.
        env = {"HOME": tmp, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        for name, (defs, body, actions) in INKSCAPE_DRAWINGS.items():
            source = Path(tmp) / f"{name}.svg"
            source.write_text(_inkscape_source(name, defs, body), encoding="utf-8")
            for kind, flags in (("inkscape", ""), ("plain", "export-plain-svg;")):
                target = Path(tmp) / f"{name}-{kind}.svg"
                subprocess.run(
                    ["inkscape", str(source), "--actions",
                     f"{actions};export-type:svg;{flags}export-filename:{target};export-do"],
                    check=True, capture_output=True, env=env,
                )  # fmt: skip
                out[f"{name}-{kind}"] = target.read_text(encoding="utf-8")
    return out


# Scripted Inkscape output for the browser's XSS proof (tests/data/xss/): what
# Inkscape's Interactivity fields (Object Properties), its Add Link and its
# embedded scripts (Document Properties > Scripting) write. The actions set the
# attributes the way those dialogs do; the file is Inkscape's export.
INKSCAPE_PAYLOADS: dict[str, tuple[str, str, str]] = {
    # name -> (export flags, body, actions)
    "inkscape-interactivity-handlers": (
        "",
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<rect style="fill:#e63946" id="button1" width="60" height="30" x="20" y="35" rx="4"/></g>',
        "select-by-id:button1;object-set-attribute:onclick,alert(1);"
        "object-set-attribute:onmouseover,alert(2)",
    ),
    "inkscape-embedded-script": (
        "export-plain-svg;",
        '<script id="script1" type="text/javascript">alert(1)</script>'
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<rect style="fill:#457b9d" id="rect1" width="60" height="30" x="20" y="35"/></g>',
        "select-by-id:rect1;transform-translate:1,0",
    ),
    "inkscape-javascript-link": (
        "",
        '<g inkscape:groupmode="layer" inkscape:label="Layer 1" id="layer1">'
        '<a id="a1" xlink:href="https://example.org/"><rect style="fill:#2a9d8f" id="rect1"'
        ' width="60" height="30" x="20" y="35"/></a></g>',
        "select-by-id:a1;object-set-attribute:xlink:href,javascript:alert(1)",
    ),
}


def inkscape_payloads() -> None:
    target = HERE.parent / "xss" / "payloads"
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HOME": tmp, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        for name, (flags, body, actions) in INKSCAPE_PAYLOADS.items():
            source = Path(tmp) / f"{name}.svg"
            source.write_text(_inkscape_source(name, "", body), encoding="utf-8")
            out = target / f"{name}.svg"
            subprocess.run(
                ["inkscape", str(source), "--actions",
                 f"{actions};export-type:svg;{flags}export-filename:{out};export-do"],
                check=True, capture_output=True, env=env,
            )  # fmt: skip
            print(f"xss payload: {out.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--node-modules",
        type=Path,
        default=None,
        help="an existing node_modules with the NPM packages (else installed)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modules = args.node_modules
        npm_families = {"svg-term", "mermaid", "avatars"}
        if modules is None and (args.only is None or npm_families & set(args.only)):
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", tmp, *NPM], check=True
            )
        if modules is None:
            modules = Path(tmp) / "node_modules"
        families: dict[str, Callable[[], dict[str, str]]] = {
            "graphviz": graphviz,
            "matplotlib": matplotlib_figures,
            "svg-term": lambda: svg_term(modules),
            "mermaid": lambda: mermaid(modules),
            "badges": badges,
            "avatars": lambda: avatars(modules),
            "inkscape": inkscape,
        }
        for family, make in families.items():
            if args.only is None or family in args.only:
                _write(family, make())
        if args.only is None or "inkscape" in args.only:
            inkscape_payloads()


if __name__ == "__main__":
    main()
