"""The quality report as one self-contained HTML page (no JavaScript, charts in SVG)."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, select_autoescape

from tournesol.quality.flags import all_flags, severity
from tournesol.quality.report import QualityReport


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tournesol.quality", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: f"{100 * v:.1f} %"
    env.globals["severity"] = lambda code: severity(code).value
    env.globals["describe"] = lambda code: (
        all_flags()[code].description if code in all_flags() else ""
    )
    return env


def render_html(report: QualityReport) -> str:
    """The whole page, ready to save or to serve."""
    return _environment().get_template("report.html").render(report=report)
