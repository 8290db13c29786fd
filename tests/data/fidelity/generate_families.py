"""Re-create the generated families of the fidelity corpus (a maintainer's tool).

    python tests/data/fidelity/generate_families.py [--only FAMILY ...]

Unlike the vendored icon sets (``vendor_corpus.py``), these files are *made*
here by the tools that produce most real-world SVG, from inputs written in this
file: graphviz (``dot -Tsvg``, Debian ``graphviz``), matplotlib, svg-term (npm
``svg-term-cli`` on asciicast recordings written below), mermaid (the npm
package rendered in headless Chromium), badges (PyPI ``pybadges``) and avatars
(npm ``@dicebear/*`` styles under CC0/MIT, and ``jdenticon``). Versions are
pinned here and recorded in LICENSES.md; the output is committed, so CI needs
none of these tools. Needs: ``dot``, ``npm``, ``/usr/bin/chromium``, and
``matplotlib``, ``pybadges`` and ``playwright`` in the running Python.
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
        if modules is None:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", tmp, *NPM], check=True
            )
            modules = Path(tmp) / "node_modules"
        families: dict[str, Callable[[], dict[str, str]]] = {
            "graphviz": graphviz,
            "matplotlib": matplotlib_figures,
            "svg-term": lambda: svg_term(modules),
            "mermaid": lambda: mermaid(modules),
            "badges": badges,
            "avatars": lambda: avatars(modules),
        }
        for family, make in families.items():
            if args.only is None or family in args.only:
                _write(family, make())


if __name__ == "__main__":
    main()
