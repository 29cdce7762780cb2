"""The report page (``index.html``): the honest hold-out figures first, then in-sample figures labelled as
such, the charts, the dataset summary and the quarantine; a plain caution when the data are synthetic."""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batch.evaluation.figures import (
    BALANCE_PNG,
    CHART_TITLES,
    FEEDBACK_SPLIT,
    HELD_OUT_SPLITS,
    LABEL_ORDER,
    split_sort_key,
)
from streaming.core.registry import ModelRef
from streaming.ops.provenance import CAUTION_TITLE, caution_text
from streaming.ops.text import NOT_DEFINED, undefined_metrics

if TYPE_CHECKING:
    from batch.evaluation.metrics import HoldOut, SplitEvaluation

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #666; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.95em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
table.headline { font-size: 1.05em; } table.headline td { font-weight: 600; }
table.headline td:first-child, table.headline td:nth-child(2) { font-weight: normal; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #666; font-size: 0.9em; }
.caution { background: #fff4e5; border: 1px solid #f0b35b; border-radius: 4px; padding: 0.7em 1em; }
"""

_HOLD_OUT_HEADERS = ("model version", "held-out images", "images", "accuracy", "balanced accuracy", "ROC AUC",
                     "sensitivity (recall)", "specificity", "precision", "F1")
_IN_SAMPLE_HEADERS = ("model version", "split", "images", "accuracy", "ROC AUC", "recall", "specificity",
                      "threshold")


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


_UNDEFINED_NOTE = (f"{NOT_DEFINED}: not defined for these images (no PNEUMONIA image: no sensitivity; no NORMAL "
                   "image: no specificity; none predicted PNEUMONIA: no precision).")


def _rate(metrics: dict, key: str) -> Any:
    """A rate, or ``n/a`` where the split's confusion matrix leaves it undefined (not 0.000)."""
    return NOT_DEFINED if key in undefined_metrics(metrics.get("confusion_matrix")) else metrics.get(key)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _version_name(version: str, champion: ModelRef) -> str:
    return f"v{version} (champion)" if version == champion.version else f"v{version}"


def _images(images: int | None, patients: int | None) -> str | None:
    if images is None:
        return None
    return f"{images} ({patients} patients)" if patients is not None else str(images)


def hold_out_rows(holdouts: Sequence[HoldOut], evaluations: Sequence[SplitEvaluation], champion: ModelRef
                  ) -> list[list[Any]]:
    """Per version: its validation hold-out (recorded at training), then each held-out split evaluated now."""
    versions = sorted({h.model_version for h in holdouts} | {e.model_version for e in evaluations
                                                             if e.split in HELD_OUT_SPLITS}, key=int)
    rows = []
    for version in versions:
        for h in (h for h in holdouts if h.model_version == version):
            m = h.metrics
            rows.append([_version_name(version, champion), "validation: patients held out at training",
                         _images(h.images, h.patients), m.get("accuracy"), m.get("balanced_accuracy"),
                         m.get("roc_auc"), _rate(m, "recall"), _rate(m, "specificity"), _rate(m, "precision"),
                         _rate(m, "f1")])
        for e in sorted((e for e in evaluations if e.model_version == version and e.split in HELD_OUT_SPLITS),
                        key=lambda e: split_sort_key(e.split)):
            m = e.metrics
            rows.append([_version_name(version, champion), f"{e.split} split (never trained on)", len(e.y),
                         m.get("accuracy"), m.get("balanced_accuracy"), m.get("roc_auc"), _rate(m, "recall"),
                         _rate(m, "specificity"), _rate(m, "precision"), _rate(m, "f1")])
    return rows


def in_sample_rows(evaluations: Sequence[SplitEvaluation], champion: ModelRef) -> list[list[Any]]:
    rows = []
    for e in sorted(evaluations, key=lambda e: (int(e.model_version), split_sort_key(e.split))):
        if e.split in HELD_OUT_SPLITS:
            continue
        m = e.metrics
        rows.append([_version_name(e.model_version, champion), e.split, len(e.y), m.get("accuracy"),
                     m.get("roc_auc"), _rate(m, "recall"), _rate(m, "specificity"), e.threshold])
    return rows


def synthetic_caution(synthetic: dict | None) -> list[str]:
    """The plain caution shown when the lakehouse holds generated images (empty otherwise); its words are
    the live page's too (`streaming.ops.provenance.caution_text`)."""
    if not synthetic:
        return []
    return [f'<div class="caution"><p><b>{html.escape(CAUTION_TITLE)}</b> {html.escape(caution_text(synthetic))}'
            "</p></div>"]


def _performance(holdouts: Sequence[HoldOut], evaluations: Sequence[SplitEvaluation], champion: ModelRef
                 ) -> list[str]:
    parts = ["<h2>Hold-out performance per model version</h2>"]
    rows = hold_out_rows(holdouts, evaluations, champion)
    parts.append(_table(_HOLD_OUT_HEADERS, rows, "headline") if rows else
                 "<p>No hold-out figures yet: no version recorded validation metrics and no labelled image of "
                 "a held-out split (<code>test</code>) is in silver.</p>")
    parts.append(
        '<p class="note">Images the model version never trained on. <i>Validation</i>: the patients '
        "<code>xray retrain</code> held out (20 %) to measure the version before refitting it on every "
        "labelled image; <i>test split</i>: images staged as <code>test</code>, which no version trains on. "
        "PNEUMONIA is the positive class: sensitivity is PNEUMONIA recall, specificity is NORMAL recall; "
        f"{_UNDEFINED_NOTE}</p>")
    in_sample = in_sample_rows(evaluations, champion)
    if in_sample:
        parts += [
            "<h2>In-sample figures (images the model trained on)</h2>",
            '<p class="note">The shipped model was fit on these images (splits train, val and labelled images '
            "without a split), so these figures are optimistic, near 1.000 whatever the model's real quality: "
            "they check that scoring works, not how well the model generalises."
            + (" <i>feedback</i>: the images radiologists confirmed (<code>xray feedback</code>), labelled by them: "
               "the accuracy there is the agreement with the readers, on images the model may have trained on."
               if any(e.split == FEEDBACK_SPLIT for e in evaluations) else "") + f" {_UNDEFINED_NOTE}</p>",
            _table(_IN_SAMPLE_HEADERS, in_sample),
        ]
    return parts


def _images_and_patients(row: dict) -> str:
    patients = int(row["patients"])
    return f"{row['images']} ({patients} patient{'' if patients == 1 else 's'})"


def _summary_html(summary: Sequence[dict]) -> str:
    per_split: dict[str, dict[str, dict]] = defaultdict(dict)
    total = None
    for row in summary:
        if row["split"] == "all":
            total = row
        else:
            per_split[row["split"]][row["label_name"]] = row
    labels = [label for label in LABEL_ORDER if any(label in v for v in per_split.values())]
    rows = []
    for split in sorted(per_split, key=split_sort_key):
        cells = per_split[split]
        rows.append([split, *[_images_and_patients(cells[lb]) if lb in cells else 0 for lb in labels],
                     sum(int(c["images"]) for c in cells.values())])
    table = _table(["split", *labels, "images"], rows) if rows else "<p>No valid images in silver yet.</p>"
    if total is not None:
        table += (f"<p>All splits: <b>{total['images']}</b> distinct valid images from <b>{total['patients']}"
                  f"</b> patients; <b>{total['quarantined']}</b> file(s) quarantined; <b>{total['duplicates']}"
                  "</b> duplicate file(s) skipped.</p>")
    return table


def _header(champion: ModelRef, champion_tags: dict[str, str], threshold: Any, generated_time: dt.datetime
            ) -> list[str]:
    details = [f"feature version <code>{html.escape(champion_tags.get('feature_version', '?'))}</code>"]
    if threshold is not None:
        details.append(f"threshold {float(threshold):.3f}")
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>X-ray classifier report: {html.escape(champion.name)} v{html.escape(champion.version)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Chest X-ray classifier report</h1>",
        f'<p class="meta">Generated {generated_time.strftime("%Y-%m-%d %H:%M:%S")} UTC. Champion model '
        f"<b>{html.escape(champion.name)}</b> version <b>{html.escape(champion.version)}</b> "
        f"({'; '.join(details)}).</p>",
    ]


def render_html(
    champion: ModelRef,
    champion_tags: dict[str, str],
    evaluations: Sequence[SplitEvaluation],
    summary: Sequence[dict],
    quarantine_by_rule: dict[str, int],
    images: dict[str, str],
    generated_time: dt.datetime,
    holdouts: Sequence[HoldOut] = (),
    synthetic: dict | None = None,
) -> str:
    """The report page: caution, hold-out figures per version, in-sample figures, charts, summary, quarantine."""
    champion_evaluations = [e for e in evaluations if e.model_version == champion.version]
    threshold = champion_evaluations[0].threshold if champion_evaluations else champion_tags.get("threshold")
    parts = _header(champion, champion_tags, threshold, generated_time)
    parts += synthetic_caution(synthetic)
    parts += _performance(holdouts, evaluations, champion)
    for name, title in CHART_TITLES.items():
        if name in images:
            parts += [f"<h2>{title}</h2>", f'<img src="{html.escape(images[name])}" alt="{title}">']
        if name == BALANCE_PNG:
            parts += ["<h2>Dataset summary</h2>", _summary_html(summary)]
    parts.append("<h2>Quarantine by rule</h2>")
    if quarantine_by_rule:
        ranked = sorted(quarantine_by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(_table(("rule", "files"), [*ranked, ("total", sum(quarantine_by_rule.values()))]))
    else:
        parts.append("<p>No file has been quarantined.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
