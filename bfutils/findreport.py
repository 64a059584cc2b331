"""The finder's outputs: ``report.html`` (self-contained), ``pairs.csv`` and ``skipped.csv``.

The report lists every flagged pair side by side, highest score first, with the matched
regions outlined in both images and the evidence (score, keypoint inliers, transform, pair
score), then a strip of near misses below the threshold, then every skipped file with its
reason. Images are embedded as base64 JPEG thumbnails, so the file can be mailed or archived
on its own.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from bfutils import data

CSV_COLUMNS = ["a", "b", "score", "pair_score", "inliers", "transform", "box_a", "box_b",
               "flagged", "matches", "evidence", "cos_global", "cos_region", "note"]  # fmt: skip
THUMB = 320
NEAR_MISSES = 12

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
.pair{border:1px solid #ccc;border-radius:6px;padding:.8em;margin:1em 0;background:#fafafa}
.imgs{display:flex;gap:1em;flex-wrap:wrap;align-items:flex-start}
figure{margin:0} figcaption{font-size:.85em;word-break:break-all;max-width:320px}
.ev{font-size:.9em;margin:.4em 0} .score{font-weight:bold;color:#b00}
.strip{display:flex;gap:.6em;flex-wrap:wrap}
.strip figure{border:1px solid #ddd;padding:.3em} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2em .5em;font-size:.9em;text-align:left}
"""


def _parse_box(text) -> tuple[float, ...] | None:
    if not isinstance(text, str) or not text:
        return None
    return tuple(float(v) for v in text.split(","))


def _thumb(path: Path, page: int, box, size: int = THUMB) -> str:
    """Base64 JPEG of an image, shrunk to ``size``, with ``box`` (original px) outlined."""
    try:
        image = Image.fromarray(data.read_image_file(path, page=page))
    except data.ImageReadError:
        image = Image.new("RGB", (size, size), (200, 200, 200))
    f = size / max(image.size)
    if f < 1 or max(image.size) < 96:  # tiny panels are enlarged so that people can see them
        image = image.resize((max(1, round(image.width * f)), max(1, round(image.height * f))))
    else:
        f = 1.0
    if box is not None:
        draw = ImageDraw.Draw(image)
        width = max(2, round(max(image.size) / 120))
        draw.rectangle([v * f for v in box], outline=(255, 30, 30), width=width)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _locate(key: str, roots: dict[str, Path]) -> tuple[Path, int]:
    """File and page of a panel key (``ref/`` prefix: the reference folder; ``#p2``: page)."""
    page = 0
    if "#p" in key:
        key, p = key.rsplit("#p", 1)
        page = int(p)
    if key.startswith("ref/") and "ref/" in roots:
        return roots["ref/"] / key[4:], page
    return roots[""] / key, page


def _figure(key, roots, box, size=THUMB) -> str:
    path, page = _locate(key, roots)
    src = _thumb(path, page, _parse_box(box), size=size)
    return (f'<figure><img src="{src}" alt="{html.escape(key)}">'
            f"<figcaption>{html.escape(key)}</figcaption></figure>")  # fmt: skip


def _evidence(row) -> str:
    fit = html.escape(row.transform) if row.transform else "no keypoint fit"
    note = f"<br><em>{html.escape(row.note)}</em>" if row.note else ""
    encoder = ""  # encoder cosines, when the detector embeds with an encoder
    if any(abs(float(v)) > 0 for v in (row.cos_global, row.cos_region) if v == v):
        encoder = f" (encoder cosine {row.cos_global:.3f}, best region {row.cos_region:.3f})"
    return (
        f'<div class="ev"><span class="score">score {row.score:.3f}</span> · '
        f"{int(row.inliers)} keypoint inliers of {int(row.matches)} one-to-one matches "
        f"(evidence {row.evidence:.1f} = -log10 chance) · {fit} · pair score "
        f"{row.pair_score:.3f}{encoder}{note}</div>"
    )


def render(table: pd.DataFrame, roots: dict[str, Path]) -> str:
    """The report as one HTML string (see the module docstring)."""
    thr = table.attrs.get("threshold", float("nan"))
    flagged = table[table["flagged"]]
    near = table[~table["flagged"]].head(NEAR_MISSES)
    skipped = table.attrs.get("skipped", pd.DataFrame(columns=["file", "reason"]))
    blank = table[table["note"].str.startswith("blank", na=False)]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Reused panels</title>"
        f"<style>{_STYLE}</style></head><body><h1>Reused panels</h1>",
        f"<p>{table.attrs.get('n_panels', '?')} panels scanned, {len(table)} candidate pairs "
        f"verified, <b>{len(flagged)} flagged</b> (fused score &ge; {thr:.3f}), "
        f"{len(skipped)} files skipped. Evidence for a person to look at, not a verdict.</p>",
        "<h2>Flagged pairs</h2>" + ("" if len(flagged) else "<p>None above the threshold.</p>"),
    ]
    for rank, row in enumerate(flagged.itertuples(index=False), start=1):
        parts.append(
            f'<div class="pair" id="pair{rank}"><div><b>#{rank}</b> '
            f"{html.escape(row.a)} &harr; {html.escape(row.b)}</div>{_evidence(row)}"
            f'<div class="imgs">{_figure(row.a, roots, row.box_a)}'
            f"{_figure(row.b, roots, row.box_b)}</div></div>"
        )
    parts.append("<h2>Near misses (below the threshold)</h2><div class='strip'>")
    for row in near.itertuples(index=False):
        parts.append(
            f"<figure>{_figure(row.a, roots, row.box_a, 120)}"
            f"{_figure(row.b, roots, row.box_b, 120)}"
            f"<figcaption>score {row.score:.3f}</figcaption></figure>"
        )
    parts.append("</div>")
    if len(blank):
        names = sorted(set(blank["a"]) | set(blank["b"]))
        parts.append(f"<h2>Blank panels</h2><p>No content, so no evidence of reuse either way "
                     f"(not flagged): {html.escape(', '.join(names[:50]))}</p>")  # fmt: skip
    parts.append("<h2>Skipped files</h2>")
    if len(skipped):
        rows = "".join(f"<tr><td>{html.escape(str(r.file))}</td><td>{html.escape(str(r.reason))}"
                       "</td></tr>" for r in skipped.itertuples(index=False))  # fmt: skip
        parts.append(f"<table><tr><th>file</th><th>reason</th></tr>{rows}</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(table: pd.DataFrame, out: str | Path, panels_dir, reference=None) -> Path:
    """Write ``report.html``, ``pairs.csv`` and ``skipped.csv`` into ``out``.

    Args:
        table: the result of :func:`bfutils.find.find`.
        out: output folder (created).
        panels_dir: the scanned panel folder (to embed the images).
        reference: the reference folder, if any.

    Returns:
        The path of ``report.html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table[CSV_COLUMNS].to_csv(out / "pairs.csv", index=False)
    skipped = table.attrs.get("skipped", pd.DataFrame(columns=["file", "reason"]))
    skipped.to_csv(out / "skipped.csv", index=False)
    roots = {"": Path(panels_dir)} | ({"ref/": Path(reference)} if reference else {})
    path = out / "report.html"
    path.write_text(render(table, roots), encoding="utf-8")
    return path


def is_blank_screenshot(png: str | Path) -> bool:
    """Whether a screenshot is a single flat colour (a report that did not render)."""
    pixels = np.asarray(Image.open(png).convert("L"))
    return bool(pixels.std() < 1.0)
