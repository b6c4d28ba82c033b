"""The pack's PDF report (reportlab): cover, summary per control, charts, chain verification,
one section per control, sampled records and the evidence index.

Everything shown is a figure or sample drawn from the CSVs in the same pack; the PDF says which
file holds each full population.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from reports.catalog import Assessment
from reports.nist import plain_text

from .report_context import ReportContext

PAGE_W, PAGE_H = A4
MARGIN = 16 * mm
WIDTH = PAGE_W - 2 * MARGIN
GREEN = colors.HexColor("#1b7f3b")
RED = colors.HexColor("#b42318")
GREY = colors.HexColor("#667085")
LIGHT = colors.HexColor("#f2f4f7")
DECISION_COLOURS = {"allow": colors.HexColor("#2e90fa"), "deny": colors.HexColor("#f04438"),
                    "hold": colors.HexColor("#f79009"), "error": colors.HexColor("#7a5af8"),
                    "withheld": colors.HexColor("#e31b54"), "info": colors.HexColor("#98a2b3")}
ACTION_COLOURS = [colors.HexColor(c) for c in ("#12b76a", "#2e90fa", "#f79009", "#7a5af8",
                                               "#f04438", "#98a2b3")]


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("t", parent=base["Title"], fontSize=24, leading=30,
                                spaceAfter=6 * mm),
        "subtitle": ParagraphStyle("st", parent=base["Normal"], fontSize=13, leading=17,
                                   textColor=GREY, alignment=TA_CENTER, spaceAfter=10 * mm),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontSize=16, leading=20,
                             spaceBefore=2 * mm, spaceAfter=3 * mm),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontSize=12.5, leading=16,
                             spaceBefore=4 * mm, spaceAfter=2 * mm),
        "body": ParagraphStyle("b", parent=base["BodyText"], fontSize=9.5, leading=12.5),
        "small": ParagraphStyle("s", parent=base["BodyText"], fontSize=8, leading=10,
                                textColor=GREY),
        "cell": ParagraphStyle("c", parent=base["BodyText"], fontSize=8, leading=9.6),
        "cellb": ParagraphStyle("cb", parent=base["BodyText"], fontSize=8, leading=9.6,
                                fontName="Helvetica-Bold"),
        "mono": ParagraphStyle("m", parent=base["BodyText"], fontName="Courier", fontSize=7,
                               leading=8.6),
    }


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _table(rows: list[list[Any]], widths: Sequence[float], header: bool = True,
           zebra: bool = True) -> Table:
    table = Table(rows, colWidths=list(widths), repeatRows=1 if header else 0, hAlign="LEFT")
    style = [("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("FONTSIZE", (0, 0), (-1, -1), 8),
             ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), LIGHT),
                  ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black)]
    if zebra:
        for i in range(2, len(rows), 2):
            style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#fafafa")))
    table.setStyle(TableStyle(style))
    return table


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _period_text(ctx: ReportContext, *, exact: bool = True) -> str:
    last_day = (ctx.period_end - dt.timedelta(microseconds=1)).date()
    short = f"{ctx.period_start:%Y-%m-%d} to {last_day:%Y-%m-%d}"
    if not exact:
        return short
    return (f"{short} (records at or after {_when(ctx.period_start)} and before "
            f"{_when(ctx.period_end)})")


def _buckets(ctx: ReportContext) -> tuple[list[str], dict[str, str]]:
    """Chart categories: every day of the period (weeks or months for long periods) up to the
    generation time, so silent days show as gaps; and the day -> bucket map."""
    first = ctx.period_start.date()
    last = min(ctx.period_end - dt.timedelta(microseconds=1), ctx.generated_at).date()
    days = [first + dt.timedelta(days=i) for i in range(max((last - first).days + 1, 1))]
    if len(days) <= 62:
        key = dt.date.isoformat
    elif len(days) <= 400:
        def key(d: dt.date) -> str:
            year, week, _ = d.isocalendar()
            return f"{year}-W{week:02d}"
    else:
        def key(d: dt.date) -> str:
            return f"{d:%Y-%m}"
    mapping = {d.isoformat(): key(d) for d in days}
    return list(dict.fromkeys(mapping.values())), mapping


def _calls_chart(ctx: ReportContext) -> Drawing:
    categories, mapping = _buckets(ctx)
    decisions = sorted({dec for (_, dec) in ctx.calls_by_day},
                       key=lambda d: (list(DECISION_COLOURS).index(d)
                                      if d in DECISION_COLOURS else 99, d))
    data: list[list[int]] = []
    for dec in decisions or ["allow"]:
        series = dict.fromkeys(categories, 0)
        for (day, d), n in ctx.calls_by_day.items():
            if d == dec and day in mapping:
                series[mapping[day]] += n
        data.append([series[c] for c in categories])
    drawing = Drawing(WIDTH, 230)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 40, 50, WIDTH - 150, 165
    chart.data = data
    chart.categoryAxis.style = "stacked"
    chart.categoryAxis.categoryNames = [c[5:] if len(c) == 10 else c for c in categories]
    chart.categoryAxis.labels.angle = 90
    chart.categoryAxis.labels.fontSize = 6
    chart.categoryAxis.labels.boxAnchor = "e"
    chart.categoryAxis.labels.dy = -2
    if len(categories) > 40:
        step = (len(categories) + 39) // 40
        chart.categoryAxis.categoryNames = [n if i % step == 0 else ""
                                            for i, n in enumerate(chart.categoryAxis.categoryNames)]
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.barSpacing = 0.5
    for i, dec in enumerate(decisions):
        chart.bars[i].fillColor = DECISION_COLOURS.get(dec, GREY)
        chart.bars[i].strokeColor = None
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = WIDTH - 95, 200
    legend.fontSize = 8
    legend.alignment = "right"
    legend.colorNamePairs = [(DECISION_COLOURS.get(d, GREY), d or "none") for d in decisions]
    drawing.add(legend)
    drawing.add(String(40, 8, "Access decisions per day, by decision (population: csv/calls.csv)",
                       fontSize=8, fillColor=GREY))
    return drawing


def _masking_chart(ctx: ReportContext) -> Drawing:
    classes = sorted({c for (c, _) in ctx.masking_cells})
    actions = sorted({a for (_, a) in ctx.masking_cells})
    height = max(120, 24 * len(classes) + 70)
    drawing = Drawing(WIDTH, height)
    if not classes:
        drawing.add(String(40, height / 2, "No masking actions in the period.", fontSize=10))
        return drawing
    chart = HorizontalBarChart()
    chart.x, chart.y, chart.width, chart.height = 70, 40, WIDTH - 190, height - 60
    chart.data = [[ctx.masking_cells.get((c, a), 0) for c in classes] for a in actions]
    chart.categoryAxis.categoryNames = classes
    chart.categoryAxis.style = "stacked"
    chart.categoryAxis.labels.fontSize = 8
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    for i, _ in enumerate(actions):
        chart.bars[i].fillColor = ACTION_COLOURS[i % len(ACTION_COLOURS)]
        chart.bars[i].strokeColor = None
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = WIDTH - 100, height - 25
    legend.fontSize = 8
    legend.colorNamePairs = [(ACTION_COLOURS[i % len(ACTION_COLOURS)], a)
                             for i, a in enumerate(actions)]
    drawing.add(legend)
    drawing.add(String(70, 8, "Cells masked by PII class and action "
                       "(population: csv/masking-actions.csv)", fontSize=8, fillColor=GREY))
    return drawing


def _status_cell(a: Assessment, st: dict[str, ParagraphStyle]) -> Paragraph:
    colour = "#1b7f3b" if a.satisfied else "#b42318"
    return Paragraph(f'<font color="{colour}"><b>{escape(a.status)}</b></font>', st["cell"])


def _counts_text(a: Assessment, limit: int = 4) -> str:
    return "; ".join(f"{k}: {v}" for k, v in a.counts[:limit])


def render_pdf(path: Path, ctx: ReportContext) -> None:
    st = _styles()
    by_label = {a.label: a for a in ctx.assessments}
    evidence = {e.name: e for e in ctx.evidence}
    story: list[Any] = []

    # Cover
    system = ctx.identity.system
    story += [Spacer(1, 30 * mm),
              _p("Evidence pack — PARTIAL" if ctx.partial else "Evidence pack", st["title"]),
              _p(f"{system} — NIST SP 800-53 Rev. 5", st["subtitle"])]
    if ctx.partial:
        story += [Paragraph(
            '<font color="#b42318"><b>PARTIAL:</b></font> the period had not ended when this '
            f"pack was generated ({escape(_when(ctx.generated_at))}); it does not cover the whole "
            "period, and every control reports that as a gap.", st["body"]), Spacer(1, 4 * mm)]
    cover = [["Organisation", ctx.identity.organisation], ["System", system],
             ["Environment", ctx.identity.environment],
             ["Authorization boundary", ctx.identity.boundary],
             ["Requested by", ctx.requester.text],
             ["Period", _period_text(ctx) + (" — PARTIAL (not ended)" if ctx.partial else "")],
             ["Generated at", _when(ctx.generated_at)],
             ["Generator", f"wardgate-reports {ctx.generator_version}"],
             ["Pack", ctx.pack_uuid], ["Signed by", f"Ed25519 key {ctx.key_id} (manifest.sig)"],
             ["Controls", ", ".join(c.label for c in ctx.controls)]]
    cover += [[k, v] for k, v in ctx.parameters]
    story.append(_table([[_p(k, st["cellb"]), _p(v, st["cell"])] for k, v in cover],
                        [38 * mm, WIDTH - 38 * mm], header=False, zebra=False))
    story += [Spacer(1, 8 * mm), _p(
        "Every figure in this report is drawn from a CSV file in the same zip, which holds the "
        "full population with the query that selected it. manifest.json lists every file with "
        "its SHA-256 and is signed (manifest.sig). Verify with: python manage.py verify_pack "
        "PACK.zip --public-key pack-public-key.pem (or OpenSSL, see README.txt in the pack).",
        st["body"]), PageBreak()]

    # Summary
    failed = [a for a in ctx.assessments if not a.satisfied]
    story.append(_p("Summary", st["h1"]))
    story.append(_p(f"{len(ctx.assessments) - len(failed)} of {len(ctx.assessments)} controls "
                    f"with evidence present; {len(failed)} with gaps found.", st["body"]))
    story.append(Spacer(1, 3 * mm))
    rows: list[list[Any]] = [[_p(h, st["cellb"]) for h in
                              ("Control", "Title", "Status", "Evidence (counts)", "Gaps")]]
    for spec in ctx.controls:
        a = by_label[spec.label]
        rows.append([_p(spec.label, st["cellb"]), _p(ctx.nist.get(spec.label).title, st["cell"]),
                     _status_cell(a, st), _p(_counts_text(a), st["cell"]),
                     _p(len(a.gaps), st["cell"])])
    story.append(_table(rows, [17 * mm, 40 * mm, 27 * mm, WIDTH - 96 * mm, 12 * mm]))
    story.append(_p("Status is that of each control's technical objective, the part Wardgate "
                    "evidences; each control's section names the parts that are the "
                    "organisation's and outside the tool.", st["small"]))

    # Chain verification
    chain = ctx.chain
    ok = bool(chain.get("ok"))
    story += [_p("Audit chain verification", st["h2"]), Paragraph(
        f'<font color="{"#1b7f3b" if ok else "#b42318"}"><b>'
        f'{"VERIFIED" if ok else "BROKEN"}</b></font>: '
        f'{escape(str(chain.get("records_checked", 0)))} records verified up to chain head '
        f'#{escape(str(chain.get("head_seq")))}; '
        f'{escape(str(chain.get("checkpoints_checked", 0)))} signed checkpoints checked.',
        st["body"])]
    details = [["head hash", str(chain.get("head_hash") or "")]]
    latest = chain.get("latest_checkpoint") or {}
    if latest:
        details.append(["latest checkpoint", f"#{latest.get('seq')} at {latest.get('at')} "
                                             f"(key {latest.get('key_id')})"])
    details.append(["period covered by a checkpoint",
                    "yes" if chain.get("signed_by_checkpoint") else "no"])
    for problem in ([chain.get("problem")] if chain.get("problem") else []) + list(
            chain.get("problems") or []):
        details.append(["problem", str(problem)])
    story.append(_table([[_p(k, st["cellb"]), _p(v, st["mono"] if k == "head hash"
                                                 else st["cell"])] for k, v in details],
                        [45 * mm, WIDTH - 45 * mm], header=False, zebra=False))
    story.append(_p("Full result: chain/verification.json.", st["small"]))

    # Charts
    story += [PageBreak(), _p("Figures", st["h1"]),
              _p("Figure 1. Access decisions per day by decision", st["h2"]), _calls_chart(ctx),
              Spacer(1, 4 * mm), _p("Figure 2. Masking actions by PII class", st["h2"]),
              _masking_chart(ctx)]

    # Controls
    story += [PageBreak(), _p("Controls", st["h1"])]
    for spec in ctx.controls:
        a = by_label[spec.label]
        text = ctx.nist.get(spec.label)
        plain = plain_text(text.statement)
        statement = plain if len(plain) <= 900 else (
            plain[:900].rsplit(" ", 1)[0] + " … (abridged)")
        block: list[Any] = [
            Paragraph(f"{escape(spec.label)} {escape(text.title)} — "
                      f'<font color="{"#1b7f3b" if a.satisfied else "#b42318"}">'
                      f"{escape(a.status)}</font>", st["h2"]),
            _p(statement.replace("\n", " "), st["small"]),
            Spacer(1, 1.5 * mm),
            _p(f"Evidence (technical objective): {spec.approach}", st["body"]),
        ]
        if spec.organisational:
            block.append(_p(f"Organisational parts, outside the tool: {spec.organisational}",
                            st["small"]))
        counts = [[_p(k, st["cell"]), _p(v, st["cell"])] for k, v in a.counts]
        if counts:
            block.append(_table(counts, [70 * mm, 40 * mm], header=False))
        for gap in a.gaps:
            block.append(Paragraph(f'<font color="#b42318">Gap:</font> {escape(gap)}', st["body"]))
        for note in a.notes:
            block.append(_p(f"Note: {note}", st["small"]))
        files = [evidence[n] for n in spec.evidence if n in evidence]
        block.append(_p("Files: " + "; ".join(
            f"{e.path} ({e.rows} rows)" for e in files), st["small"]))
        story += [CondPageBreak(60 * mm), KeepTogether(block[:4]), *block[4:]]

    # Samples
    if ctx.samples:
        story += [PageBreak(), _p("Sampled records", st["h1"])]
    for sample in ctx.samples:
        story += [CondPageBreak(50 * mm), _p(sample.title, st["h2"]), _p(sample.note, st["small"])]
        if not sample.rows:
            story.append(_p("No records in the population.", st["body"]))
            continue
        head = [_p(c, st["cellb"]) for c in sample.columns]
        body = [[_p(_fmt(r.get(c)), st["mono"] if c == "hash" else st["cell"])
                 for c in sample.columns] for r in sample.rows]
        story.append(_table([head, *body], _widths(sample.columns)))

    # Evidence index
    story += [PageBreak(), _p("Evidence files", st["h1"]), _p(
        "Rows written and rows counted independently in the database when the pack was built "
        "(they must be equal). SHA-256 abbreviated; manifest.json has them in full.",
        st["small"]), Spacer(1, 2 * mm)]
    index = [[_p(h, st["cellb"]) for h in ("File", "Kind", "Rows", "DB rows", "SHA-256")]]
    for e in ctx.evidence:
        index.append([_p(e.path, st["cell"]), _p(e.method, st["cell"]), _p(e.rows, st["cell"]),
                      _p("" if e.expected_rows is None else e.expected_rows, st["cell"]),
                      _p(e.sha256[:16] + "…", st["mono"])])
    story.append(_table(index, [72 * mm, 18 * mm, 20 * mm, 20 * mm, WIDTH - 130 * mm]))

    footer = (f"{system} evidence pack {ctx.pack_uuid} · {_period_text(ctx, exact=False)}"
              + (" · PARTIAL" if ctx.partial else ""))
    created = ctx.generated_at.astimezone(dt.UTC).strftime("D:%Y%m%d%H%M%S+00'00'")

    def on_page(canvas: Any, doc: Any) -> None:
        # The document info's CreationDate/ModDate: when the pack was generated (the rest of
        # the file stays invariant, so equal inputs give equal bytes).
        canvas.setDateFormatter(lambda *_: created)
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(GREY)
        canvas.drawString(MARGIN, 9 * mm, footer)
        canvas.drawRightString(PAGE_W - MARGIN, 9 * mm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN,
                            topMargin=MARGIN, bottomMargin=16 * mm,
                            title=f"{system} evidence pack {ctx.pack_uuid}",
                            author="wardgate-reports", subject=_period_text(ctx, exact=False),
                            creator=f"wardgate-reports {ctx.generator_version}",
                            invariant=1)
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)


_FIXED_WIDTHS = {"seq": 13 * mm, "at": 29 * mm, "cells": 11 * mm, "decision": 15 * mm,
                 "auth_method": 21 * mm, "action": 15 * mm, "class": 14 * mm, "hash": 34 * mm}


def _widths(columns: Sequence[str]) -> list[float]:
    fixed = sum(_FIXED_WIDTHS.get(c, 0) for c in columns)
    flexible = [c for c in columns if c not in _FIXED_WIDTHS]
    share = (WIDTH - fixed) / len(flexible) if flexible else 0
    return [_FIXED_WIDTHS.get(c, share) for c in columns]


def _fmt(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T":
        return f"{value[:10]} {value[11:19]}"  # ISO-8601 UTC as written in the CSVs
    return "" if value is None else str(value)
