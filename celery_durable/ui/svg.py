"""The timeline as an SVG Gantt chart: one row per bar, a time axis, labels and durations.

Plain SVG text (no script, every text escaped), so the instance page can put it inline and a test
can find each bar as ``rect.bar`` with ``data-kind``, ``data-outcome`` and ``data-task-id``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from html import escape

from celery_durable.ui.timeline import Bar, Timeline

WIDTH = 960
LABEL_WIDTH = 260
ROW = 22
TOP = 28
BAR_HEIGHT = 14
#: shortest drawn bar, so that instants (an event received, a no-op activity) stay visible
MIN_BAR = 3.0


def format_duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``3 h 02 min``, ``2 d 4 h``."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def render_svg(timeline: Timeline) -> str:
    """The SVG document of ``timeline`` (its bars in order, the whole execution first)."""
    span = max((timeline.end - timeline.start).total_seconds(), 1e-3)
    plot = WIDTH - LABEL_WIDTH - 90
    height = TOP + ROW * len(timeline.bars) + 8

    def x(at: datetime) -> float:
        return LABEL_WIDTH + plot * (at - timeline.start).total_seconds() / span

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{WIDTH}" '
             f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="timeline of {len(timeline.bars)} bars">']
    for i in range(5):  # the time axis: five ticks, seconds from the start
        tick = LABEL_WIDTH + plot * i / 4
        parts.append(f'<line class="tick" x1="{tick:.1f}" y1="{TOP - 6}" x2="{tick:.1f}" '
                     f'y2="{height - 4}"/>')
        parts.append(f'<text class="axis" x="{tick:.1f}" y="{TOP - 10}" text-anchor="middle">'
                     f'+{_attr(format_duration(span * i / 4))}</text>')
    for row, bar in enumerate(timeline.bars):
        parts.append(_bar(bar, row, x, timeline.end))
    parts.append("</svg>")
    return "".join(parts)


def _bar(bar: Bar, row: int, x: Callable[[datetime], float], end_of_timeline: datetime) -> str:
    y = TOP + ROW * row
    end = bar.end or end_of_timeline
    left, right = x(bar.start), x(end)
    width = max(right - left, MIN_BAR)
    seconds = (end - bar.start).total_seconds()
    duration = format_duration(seconds) + ("" if bar.end is not None else " so far")
    title = f"{bar.label}: {bar.outcome}, {duration}"
    if bar.celery_task_id:
        title += f" (Celery task {bar.celery_task_id})"
    if bar.fire_at:
        title += f" (fires at {bar.fire_at})"
    task = "" if bar.task_id is None else f' data-task-id="{bar.task_id}"'
    child = "" if not bar.child_instance_id else \
        f' data-child="{_attr(bar.child_instance_id)}"'
    return (f'<g class="row"><text class="label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 3}" '
            f'text-anchor="end">{_attr(_short(bar.label))}</text>'
            f'<rect class="bar {_attr(bar.kind)} {_attr(bar.outcome)}" '
            f'data-kind="{_attr(bar.kind)}" data-outcome="{_attr(bar.outcome)}"{task}{child} '
            f'data-label="{_attr(bar.label)}" x="{left:.1f}" y="{y}" width="{width:.1f}" '
            f'height="{BAR_HEIGHT}" rx="2"><title>{_attr(title)}</title></rect>'
            f'<text class="duration" x="{left + width + 4:.1f}" y="{y + BAR_HEIGHT - 3}">'
            f'{_attr(duration)}</text></g>')


def _short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
