"""Server-side SVG charts for the dashboard: geometry computed here, drawn by templates
(no JavaScript, no external library)."""

PALETTE = ["#4f7cff", "#22a06b", "#e5484d", "#f5a524", "#8e4ec6", "#12a5a5"]
KIND_COLOURS = {
    "strategy_helpful": "#22a06b",
    "strategy_harmful": "#e5484d",
    "preference": "#8e4ec6",
    "durable_fact": "#4f7cff",
    "procedure": "#f5a524",
    "patch_skill": "#12a5a5",
}
DECISION_COLOURS = {"approve": "#22a06b", "deny": "#e5484d", "conflict": "#f5a524"}


def _nice_max(value: float) -> int:
    if value <= 4:
        return 4
    for step in (
        5,
        10,
        20,
        25,
        50,
        75,
        100,
        150,
        200,
        250,
        500,
        1000,
        2000,
        5000,
        10000,
    ):
        if value <= step * 4:
            return step * 4
    return int(value) + 1


def stacked_bars(
    *,
    rows: list[dict],
    keys: list[str],
    label_key: str,
    colours: dict,
    width: int = 560,
    height: int = 180,
    label_every: int = 1,
) -> dict:
    """Stacked vertical bars: one bar per row, one segment per key."""
    left, right, top, bottom = 32, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([sum(row[k] for k in keys) for row in rows] + [0])
    y_max = _nice_max(peak)
    slot = plot_w / max(len(rows), 1)
    bar_w = max(slot * 0.7, 2)
    bars = []
    for i, row in enumerate(rows):
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h
        segments = []
        for key in keys:
            value = row[key]
            if not value:
                continue
            h = plot_h * value / y_max
            y -= h
            segments.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(bar_w, 1),
                    "h": round(h, 1),
                    "colour": colours[key],
                    "key": key,
                    "value": value,
                }
            )
        label = row[label_key]
        bars.append(
            {
                "segments": segments,
                "label": label if i % label_every == 0 else "",
                "lx": round(x + bar_w / 2, 1),
                "title": f"{label}: " + ", ".join(f"{k} {row[k]}" for k in keys),
            }
        )
    ticks = [
        {"y": round(top + plot_h - plot_h * f, 1), "value": int(y_max * f)}
        for f in (0, 0.25, 0.5, 0.75, 1)
    ]
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "ticks": ticks,
        "left": left,
        "right": width - right,
        "base": top + plot_h,
        "legend": [{"key": k, "colour": colours[k]} for k in keys],
    }


def line_chart(
    *, slots: list[str], series: dict, width: int = 1100, height: int = 220
) -> dict:
    """One polyline per series of {slot index: (ok, n)}: the success rate, 0–100 %, at
    each slot (a day, or a tenth of the runs). Slots without runs are skipped (the line
    joins the slots that have data)."""
    left, right, top, bottom = 36, 30, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    count = len(slots)
    step = plot_w / max(count - 1, 1)
    lines = []
    for i, (name, points) in enumerate(series.items()):
        coords, dots = [], []
        for slot in range(count):
            if slot not in points:
                continue
            ok, n = points[slot]
            rate = ok / n if n else 0
            x = round(left + slot * step, 1)
            y = round(top + plot_h * (1 - rate), 1)
            coords.append(f"{x},{y}")
            dots.append(
                {
                    "x": x,
                    "y": y,
                    "title": f"{name} {slots[slot]}: {ok}/{n} ({rate:.0%})",
                }
            )
        total_ok = sum(ok for ok, _ in points.values())
        total_n = sum(n for _, n in points.values())
        lines.append(
            {
                "name": name,
                "colour": PALETTE[i % len(PALETTE)],
                "points": " ".join(coords),
                "dots": dots,
                "rate": total_ok / total_n if total_n else 0,
                "runs": total_n,
            }
        )
    label_every = max(count // 6, 1)
    labels = [
        {"x": round(left + slot * step, 1), "text": slots[slot]}
        for slot in range(0, count, label_every)
    ]
    ticks = [
        {"y": round(top + plot_h * (1 - f), 1), "value": int(f * 100)}
        for f in (0, 0.25, 0.5, 0.75, 1)
    ]
    return {
        "width": width,
        "height": height,
        "lines": lines,
        "labels": labels,
        "ticks": ticks,
        "left": left,
        "right": width - right,
        "base": top + plot_h,
    }
