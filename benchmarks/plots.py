"""PNG plots of a results document. Imports matplotlib only when called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def write_plots(document: dict[str, Any], folder: Path) -> list[Path]:
    """Draw what the suites in ``document`` measured; return the files written.

    Raises ``ImportError`` when matplotlib is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = document["suites"]
    written: list[Path] = []

    lag = suites.get("lag")
    if lag and lag["status"] == "ok":
        figure, axes = plt.subplots(figsize=(7.5, 4.8))
        points = lag["series"]["points"]
        budget = sorted(
            (p for p in points if p["schedule"].startswith("budget-")),
            key=lambda p: p["requests_per_export"],
        )
        if budget:
            axes.plot(
                [p["requests_per_export"] for p in budget],
                [p["lag_p99_s"] for p in budget],
                color="tab:green",
                label="budget sweep, p99 (several budgets)",
                zorder=1,
            )
        for point in points:
            x = point["requests_per_export"]
            axes.plot([x, x], [point["lag_p50_s"], point["lag_p99_s"]], color="0.7", zorder=1)
            axes.scatter([x], [point["lag_p50_s"]], marker="o", zorder=2)
            axes.scatter([x], [point["lag_p99_s"]], marker="^", zorder=2)
            axes.annotate(
                point["schedule"],
                (x, point["lag_p99_s"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize="small",
            )
        if budget:
            axes.legend(loc="upper right", fontsize="small")
        axes.set_xlabel("requests per export")
        axes.set_ylabel("detection lag, s (o p50, ^ p99)")
        axes.set_title(f"Detection lag against polls (time scale {lag['metrics']['time_scale']:g})")
        axes.grid(alpha=0.3)
        written.append(_save(figure, folder / "lag.png", plt))

    throttle = suites.get("throttle")
    if throttle and throttle["status"] == "ok":
        cases = list(throttle["series"])
        figure, axes_list = plt.subplots(
            len(cases), 1, figsize=(8, 2.6 * len(cases)), squeeze=False
        )
        for axes, case in zip(axes_list[:, 0], cases, strict=True):
            series = throttle["series"][case]
            limit = throttle["metrics"][case]["limit"]
            axes.plot(series["t"], series["limiter_rate"], label="limiter rate")
            axes.plot(series["t"], series["accepted_per_s"], label="accepted / s", alpha=0.7)
            axes.axhline(limit, color="red", linestyle="--", label="server limit")
            axes.set_ylim(0, limit * 2)
            axes.set_title(case)
            axes.set_ylabel("requests / s")
            axes.legend(loc="lower right", fontsize="small")
        axes_list[-1, 0].set_xlabel("seconds")
        figure.tight_layout()
        written.append(_save(figure, folder / "throttle.png", plt))

    fleet = suites.get("fleet")
    if fleet and fleet["status"] == "ok":
        cases = list(fleet["series"])
        setup = fleet["metrics"]["setup"]
        figure, axes_list = plt.subplots(
            len(cases), 1, figsize=(8, 2.4 * len(cases)), squeeze=False
        )
        for axes, case in zip(axes_list[:, 0], cases, strict=True):
            series = fleet["series"][case]
            figures = fleet["metrics"][case]
            axes.plot(series["t"], series["sent"], label="sent / s", drawstyle="steps-post")
            axes.plot(series["t"], series["accepted"], label="accepted / s", drawstyle="steps-post")
            axes.axhline(setup["server_limit"], color="red", linestyle="--", label="limit")
            axes.axhline(setup["qps"], color="0.5", linestyle=":", label="--qps")
            for at, action in series["events"]:
                axes.axvline(at, color="black", linewidth=0.8)
                axes.annotate(action, (at, 5), rotation=90, fontsize="x-small")
            axes.set_ylim(0, setup["server_limit"] * 2)
            axes.set_title(
                f"{case}: worst 1-s window {figures['worst_1s_window']}, "
                f"{figures['throttled']} throttled",
                fontsize="small",
            )
            axes.set_ylabel("requests / s")
            axes.legend(loc="upper right", fontsize="x-small", ncol=4)
        axes_list[-1, 0].set_xlabel("seconds (the simulator's, whole seconds of its window)")
        figure.tight_layout()
        written.append(_save(figure, folder / "fleet.png", plt))

    client = suites.get("client")
    if client and client["status"] == "ok":
        figure, axes = plt.subplots(figsize=(6, 3.5))
        ratios = client["series"]["ratios"]
        axes.plot(range(1, len(ratios) + 1), ratios, marker="o")
        axes.axhline(1.10, color="red", linestyle="--", label="target 1.10")
        axes.axhline(1.0, color="0.5", linewidth=0.8)
        axes.set_xlabel("round")
        axes.set_ylabel("CPU get_status / bare aiohttp")
        axes.legend()
        written.append(_save(figure, folder / "client.png", plt))
    return written


def _save(figure: Any, path: Path, plt: Any) -> Path:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path
