"""`oneclass report --html`: one self-contained page (no network: styles and pictures inline) with
the paper-vs-ours tables of `report.md`, and for each group of runs its per-class ROC curves,
score histograms, most and least novel test images with their maps, and training curves.

The curves come from what a run keeps beside its record (`curves`, `examples/`, the epoch log);
runs finished before those were kept contribute their tables only, and the page says so."""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation import collect, iter_groups, read_log
from .fileio import write_text

EXAMPLE_CLASSES = 4  # example strips shown per group (the first seed's, of the first classes)

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.8em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f2f2f2}td{font-variant-numeric:tabular-nums}h2{border-bottom:2px solid #ddd;margin-top:2em}
section.group{border:1px solid #e3e3e3;border-radius:6px;padding:.5em 1em;margin:1.5em 0}
img{max-width:100%}figure{display:inline-block;margin:.4em;vertical-align:top}
figcaption{font-size:12px;color:#555}.note{color:#777;font-size:13px}
"""

# counts images that loaded and errors the page raised, so a headless browser can read both off the DOM
PROBE = """
window.__errors=[];window.addEventListener('error',e=>{window.__errors.push(String(e.message||e.type))},true);
window.addEventListener('load',()=>{const im=[...document.images];
document.body.dataset.images=im.filter(i=>i.complete&&i.naturalWidth>0).length+'/'+im.length;
document.body.dataset.errors=String(window.__errors.length);});
"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _img(data: bytes, caption: str) -> str:
    return (f'<figure><img src="{_png_uri(data)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _by_class(group: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in sorted(group, key=lambda r: (r["normal_class"], r["seed"])):
        out.setdefault(r["normal_class"], []).append(r)
    return out


def roc_figure(group: list[dict[str, Any]]) -> bytes:
    """One ROC curve per class (first seed), with its AUROC in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    head = group[0]["headline"]
    for cls, runs in _by_class(group).items():
        r = runs[0]
        roc = r["curves"]["roc"]
        ax.plot(roc["fpr"], roc["tpr"], lw=1.2,
                label=f"{cls} {r.get('normal_class_name', '')}: {r['metrics'][head]['auroc']:.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC of {head} (seed {group[0]['seed']})")
    ax.legend(fontsize=7, title="class: AUROC", title_fontsize=7)
    fig.tight_layout()
    return _figure_png(fig)


def histogram_figure(group: list[dict[str, Any]]) -> bytes:
    """Normal and novel score histograms, one small panel per class (first seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    classes = _by_class(group)
    cols = min(5, len(classes))
    rows = int(np.ceil(len(classes) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(max(2.3 * cols, 4.6), 1.9 * rows + 0.4), squeeze=False)
    for ax, (cls, runs) in zip(axes.flat, classes.items()):
        h = runs[0]["curves"]["histogram"]
        edges = np.asarray(h["edges"])
        for part, colour in (("normal", "tab:green"), ("novel", "tab:red")):
            counts = np.asarray(h[part], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.45, color=colour, label=part)
        ax.set_title(f"class {cls}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(classes):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"{group[0]['headline']} score: share of normal / novel test images per bin", fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


def training_figure(group: list[dict[str, Any]]) -> bytes | None:
    """Training and validation loss against the epoch, one line per class (first seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    logs = {cls: read_log(Path(runs[0]["_path"])) for cls, runs in _by_class(group).items()}
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for cls, log in logs.items():
        train_key = "loss" if "loss" in log[0]["train"] else next(iter(log[0]["train"]))
        val_key = "loss" if "loss" in log[0]["val"] else next(iter(log[0]["val"]), None)
        epochs = [e["epoch"] for e in log]
        axes[0].plot(epochs, [e["train"][train_key] for e in log], lw=1, label=str(cls))
        if val_key is not None:
            axes[1].plot(epochs, [e["val"].get(val_key, np.nan) for e in log], lw=1, label=str(cls))
        axes[0].set_title(f"training {train_key}", fontsize=9)
        axes[1].set_title(f"validation {val_key}", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[1].legend(fontsize=6, title="class", title_fontsize=6, ncol=2)
    fig.tight_layout()
    return _figure_png(fig)


def group_section(title: str, group: list[dict[str, Any]]) -> str:
    parts = [f'<section class="group"><h3>{html.escape(title)}</h3>']
    with_curves = [r for r in group if "curves" in r]
    if not with_curves:
        parts.append('<p class="note">These runs were finished before runs kept their curves and example '
                     "images: their numbers are in the tables above.</p>")
    else:
        parts.append(_img(roc_figure(with_curves), "ROC curves per class"))
        parts.append(_img(histogram_figure(with_curves), "score histograms per class"))
        shown = 0
        for cls, runs in _by_class(with_curves).items():
            strip = Path(runs[0]["_path"]).parent / "examples" / f"{Path(runs[0]['_path']).stem}.png"
            if strip.is_file() and shown < EXAMPLE_CLASSES:
                parts.append(_img(strip.read_bytes(), f"class {cls}, seed {runs[0]['seed']}: most and least "
                                                      "novel test images"))
                shown += 1
    curves = training_figure(group)
    if curves is not None:
        parts.append(_img(curves, "training curves (first seed of each class)"))
    parts.append("</section>")
    return "\n".join(parts)


def html_report(results: str | Path, out: str | Path | None = None) -> Path:
    """Write the page (default `RESULTS/report.html`, atomically) and return its path."""
    import markdown

    from .report import report as markdown_report
    from .errors import OneClassError
    runs = collect(results)
    if not runs:
        raise OneClassError(f"no finished runs under {results}: nothing to report")
    md = markdown_report(results, write=False)
    tables = markdown.markdown(md, extensions=["tables"])
    sections = []
    for key, group in sorted(iter_groups(runs).items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        method, options, dataset, protocol, fraction, epochs, _ = key
        if protocol == "video":
            continue  # video runs keep per-clip plots of their own (plots/ beside each run)
        title = (f"{method}{' ' + options if options != '{}' else ''} — {dataset}, {protocol}"
                 + (f" p={fraction}" if fraction is not None else "") + (f", {epochs} epochs" if epochs != "na" else ""))
        sections.append(group_section(title, group))
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>oneclass report</title>"
            f"<style>{STYLE}</style><script>{PROBE}</script></head><body>"
            f"<p class='note'>Generated by <code>oneclass report --html</code> from {len(runs)} run files in "
            f"{html.escape(str(results))} on {time.strftime('%Y-%m-%d %H:%M')}.</p>"
            f"{tables}<h2>Curves and examples</h2>{''.join(sections)}</body></html>")
    path = Path(out) if out else Path(results) / "report.html"
    write_text(path, page)
    return path
