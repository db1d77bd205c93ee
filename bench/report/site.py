"""The static site (`cwbench site`): every task's leaderboards as HTML pages a reader can
browse, sort, link to and cite, built into one folder that any static host serves and that
works from file:// (no framework, nothing fetched at view time).

Built only from what is committed: the stores (results/<task>/runs.jsonl, tuning.jsonl),
the suite files (bench/suites/*.yaml) and the PNG figures beside the leaderboards, which are
copied, never redrawn. The tables are bench.report.leaderboard's own (runs_frame,
leaderboard_table, its column choice, findings and tuning table): a number on the site is
the number in leaderboard.md. Nothing here aggregates runs another way; a row page lists
the runs its row was made from.

Pages are Jinja2 templates (bench/report/templates/) with autoescaping on: every string
that comes from a record or a file name (a target's path, a plugin architecture's name, a
note, an external record's origin) is written as text, never as markup. File names of row
pages are made from a hash and a slug of [a-z0-9-], never from such a string as given.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.leaderboard import (
    _findings,
    _short,
    _varying,
    known,
    leaderboard_table,
    reference_columns,
    reproduce_commands,
    results_only,
    runs_frame,
    setting_columns,
    target_label,
)
from bench.report.stats import bootstrap_ci
from bench.report.tuned import profile_order, protocol_line, protocol_table, reports_for
from bench.store.records import ABSENT, RunRecord
from bench.store.results import ResultsStore
from bench.store.verified import is_external, reproduced_ids
from bench.suite.suites import TUNED, load_profile, load_suite, suite_names
from bench.suite.tuning import TUNING_STORE, tuning_table
from models.errors import UserInputError

MARKER = ".cwbench-site"  # in a folder this command built: the only kind it deletes before a rebuild
TEMPLATES = Path(__file__).parent / "templates"

# How to cite the software; CITATION.cff at the repository root says the same (tested)
SOFTWARE = {
    "title": "Clockwork Bench",
    "author": "Clockwork Bench maintainers",
    "version": "0.1.0",
    "subtitle": "recurrent architectures compared at matched parameter budgets, with reproducible leaderboards",
}

CURVE_WIDTH, CURVE_HEIGHT = 560, 240
BAR_WIDTH, BAR_HEIGHT = 140, 14


@dataclass
class Cell:
    """One table cell: its text, the key a column sort uses (a number where the column is
    numeric), an optional link and an optional drawn interval."""

    text: str
    sort: float | str | None = None
    href: str | None = None
    bold: bool = False
    badge: str = ""
    bar: dict | None = None


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""


def _plain(value):
    """A pandas/numpy value as a plain Python one; NaN and None as None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def _text(value, none: str = "") -> str:
    value = _plain(value)
    if value is None:
        return none
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sort_key(value):
    """A number where the value reads as one ("+6.0%", "1e-05", 25), else its text."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else ""
    text = str(value).strip()
    try:
        number = float(text.rstrip("%"))
        return number if math.isfinite(number) else text
    except ValueError:
        return text


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:limit] or "x"


def row_key(values: dict, keys: list[str]) -> tuple:
    return tuple(_plain(values[k]) for k in keys)


def row_name(task: str, key: tuple, profile: str, arch: str, budget) -> str:
    """The file name of a row page: readable, and unique by a hash of the row's full key."""
    digest = hashlib.sha256(json.dumps([task, *key], default=str).encode()).hexdigest()[:10]
    return f"{slug(profile, 20)}-{slug(arch)}-{slug(budget, 12)}-{digest}.html"


def _scale(values: list[float]) -> tuple[float, float, bool] | None:
    """The axis of a table's interval bars: log where positive values span two decades."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    lo, hi = min(finite), max(finite)
    log = lo > 0 and hi / lo > 100
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    return lo, hi, log


def _position(value: float, scale: tuple[float, float, bool]) -> float:
    lo, hi, log = scale
    x = math.log10(value) if log else value
    return round(4 + (BAR_WIDTH - 8) * (x - lo) / (hi - lo), 2)


def interval_bars(rows: list[tuple[float | None, tuple | None]]) -> tuple[list[dict | None], bool]:
    """(mean, 95% interval) per row -> what each row's bar draws, on one axis per table."""
    scale = _scale([v for mean, ci in rows for v in ([mean, *(ci or ())])])
    bars = []
    for mean, ci in rows:
        if scale is None or mean is None or not math.isfinite(mean):
            bars.append(None)
            continue
        bar = {"mean": _position(mean, scale), "width": BAR_WIDTH, "height": BAR_HEIGHT,
               "title": f"mean {mean:.4g}" + (f", 95% interval [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "")}
        if ci:
            bar["lo"], bar["hi"] = _position(ci[0], scale), _position(ci[1], scale)
        bars.append(bar)
    return bars, bool(scale and scale[2])


def curve_chart(records: list[RunRecord], metric: str, labels: list[str], baseline: float | None = None) -> dict | None:
    """An inline SVG of the validation curve of `metric`, one line per run (the record's
    `curve`), on a log axis where positive values span two decades; the task's trivial
    baseline dashed across it."""
    key = f"val/{metric}"
    lines = []
    for record, label in zip(records, labels):
        points = [(p["step"], p[key]) for p in record.curve or []
                  if isinstance(p, dict) and isinstance(p.get("step"), (int, float)) and
                  isinstance(p.get(key), (int, float)) and math.isfinite(p[key])]
        if points:
            lines.append((label, points))
    if not lines:
        return None
    xs = [x for _, pts in lines for x, _ in pts]
    ys = [y for _, pts in lines for _, y in pts]
    if isinstance(baseline, (int, float)) and math.isfinite(baseline) and (baseline > 0 or min(ys) <= 0):
        ys.append(baseline)
    else:
        baseline = None
    log = min(ys) > 0 and max(ys) / min(ys) > 100
    fy = math.log10 if log else (lambda v: v)
    x0, x1 = min(xs), max(xs)
    y0, y1 = fy(min(ys)), fy(max(ys))
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = 56, 10, 10, 28
    w, h = CURVE_WIDTH - left - right, CURVE_HEIGHT - top - bottom

    def px(x, y):
        return f"{left + w * (x - x0) / (x1 - x0):.1f},{top + h * (1 - (fy(y) - y0) / (y1 - y0)):.1f}"

    def fmt(v):
        return f"{10 ** v:.3g}" if log else f"{v:.3g}"

    base = float(px(x0, baseline).split(",")[1]) if baseline is not None else None
    return {"width": CURVE_WIDTH, "baseline": base, "height": CURVE_HEIGHT, "left": left, "top": top, "w": w, "h": h,
            "lines": [{"label": label, "points": " ".join(px(x, y) for x, y in pts)} for label, pts in lines],
            "x0": f"{x0:g}", "x1": f"{x1:g}", "y0": fmt(y0), "y1": fmt(y1), "log": log, "metric": key}


def repository_commit(folder: Path) -> str | None:
    """The commit of the checkout that holds `folder` (with "-dirty" when its files there
    differ from it): the commit to cite a leaderboard at. None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
        changed = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."],
                                 capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if changed else "") if head else None


def _bibtex_escape(text: str) -> str:
    text = str(text).replace("\\", r"\textbackslash{}")
    return re.sub(r"([{}%&#_$])", r"\\\1", text).replace("~", r"\textasciitilde{}").replace("^", r"\^{}")


def software_bibtex() -> str:
    s = SOFTWARE
    return "\n".join([
        "@software{clockwork_bench,",
        f"  author  = {{{{{s['author']}}}}},",
        f"  title   = {{{{{s['title']}}}: {s['subtitle']}}},",
        f"  version = {{{s['version']}}},",
        "}",
    ])


def row_bibtex(task: str, profile: str, arch: str, budget, name: str, commits: list[str], board_commit: str | None,
               year: str, n_runs: int) -> str:
    key = f"cwbench_{slug(task, 20)}_{slug(profile, 20)}_{slug(arch)}_{slug(budget, 12)}_{name[-15:-5]}"
    where = f"row {name[:-5]} of the leaderboard results/{task}/leaderboard.md"
    if board_commit:
        where += f" at commit {board_commit}"
    return "\n".join([
        f"@misc{{{key.replace('-', '_')},",
        f"  author       = {{{{{SOFTWARE['author']}}}}},",
        f"  title        = {{{{{SOFTWARE['title']}}} leaderboard, task {_bibtex_escape(task)}, profile "
        f"{_bibtex_escape(profile)}: {_bibtex_escape(arch)} at a budget of {_bibtex_escape(budget)} parameters}},",
        f"  year         = {{{year}}},",
        f"  howpublished = {{{_bibtex_escape(where)}}},",
        f"  note         = {{{n_runs} runs made at commit {_bibtex_escape(', '.join(commits))}; "
        f"re-run with cwbench verify {_bibtex_escape(task)} --profile {_bibtex_escape(profile)}}},",
        "}",
    ])


def _environment():
    import jinja2  # here, not at the top: `cwbench --help` must stay light

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    return env


def _write(path: Path, text: str, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    written.append(path)


def prepare_out(out: Path) -> None:
    """An empty folder to build in: a folder this command built before is emptied; any other
    non-empty folder is refused (never delete what the user keeps there)."""
    if out.exists() and not out.is_dir():
        raise UserInputError(f"site folder {out} is a file: pass --out DIR naming a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserInputError(f"site folder {out} is not empty and was not built by `cwbench site`: "
                                 "pass --out with a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("built by `cwbench site`; the whole folder is replaced on the next build\n")


def figures_of(folder: Path, profiles: list[str]) -> dict[str, list[Path]]:
    """The PNGs beside a leaderboard by profile (`<plot>_<profile>.png`; the longest profile
    name that ends a file's stem wins, so `a_very_quick.png` is not `quick`'s)."""
    found: dict[str, list[Path]] = {p: [] for p in profiles}
    for png in sorted(folder.glob("*.png")):
        owners = [p for p in profiles if png.stem.endswith(f"_{p}")]
        if owners:
            found[max(owners, key=len)].append(png)
    return found


class TaskSite:
    """One task's pages: the task page and a page per leaderboard row."""

    def __init__(self, task: str, results_dir: Path, board_commit: str | None):
        self.task = task
        self.suite = load_suite(task)
        self.folder = Path(results_dir) / task
        self.store = ResultsStore(self.folder / "runs.jsonl")
        scanned, self.left_out = self.store.scan()
        self.records = [RunRecord.from_dict(r) for r in scanned]
        self.tuning, _ = ResultsStore(self.folder / TUNING_STORE).scan()
        self.board_commit = board_commit
        board = self.suite.get("leaderboard", {})
        self.aggregate_over = board.get("aggregate_over", [])
        self.reproduced = reproduced_ids(self.store.path)
        self.df = runs_frame(self.records, self.reproduced)
        self.primary = self.df["primary"].iloc[0]
        self.higher = bool(self.df["higher_is_better"].iloc[0])
        self.table = leaderboard_table(self.df, self.suite)
        self.per_target = None
        if self.aggregate_over:
            self.per_target = leaderboard_table(self.df, self.suite, aggregate_over=[]).drop(
                columns=["p", "paper"], errors="ignore")
        # the runs of each row, grouped exactly as leaderboard_table groups them
        settings = setting_columns(self.df, self.aggregate_over)
        self.keys = ["profile", *settings, "arch", "offset", "periods", "budget"]
        self.members = {row_key(dict(zip(self.keys, key)), self.keys): list(group.index)
                        for key, group in self.df.groupby(self.keys, dropna=False, sort=False)}
        self.names = {}
        for _, row in self.table.iterrows():
            key = row_key(row, self.keys)
            self.names[key] = row_name(task, key, row["profile"], row["arch"], row["budget"])
        self.aggregated = [k for k in self.aggregate_over if f"task.{k}" in self.df]
        self.searches = reports_for(task, self.suite, self.tuning, [r.to_dict() for r in self.records])

    # ---------------------------------------------------------------- task page
    def metrics(self) -> list[str]:
        return sorted((m.removeprefix("metric.") for m in self.df.columns if m.startswith("metric.")),
                      key=lambda m: m != self.primary)

    def external_rows(self) -> int:
        return sum(any(self.external(self.records[i]) for i in self.members[key]) for key in self.names)

    def profile_table(self, profile: str, part: pd.DataFrame, runs: pd.DataFrame) -> Table:
        """The profile's table with leaderboard.md's columns, a drawn interval beside ci95."""
        settings = setting_columns(runs, self.aggregate_over)
        shown = ["arch", *_varying(part, ["offset"]), *_varying(part, settings), "budget", "params", "deviation",
                 "shape"]
        extra = [*reference_columns(part), *(["paper"] if "paper" in part else [])]
        counts = ["n", *(["seeds"] if "seeds" in part else []), "not_learned", "diverged", "failed"]
        metrics = self.metrics()
        columns = [*shown, self.primary, "ci95", "interval", "p", *metrics[1:], *extra, *counts, "mean_wall_s"]
        intervals = []
        for _, row in part.iterrows():
            mean = _plain(row[f"_mean.{self.primary}"])
            intervals.append((mean, bootstrap_ci(row["_per_seed"])))
        bars, log = interval_bars(intervals)
        headers = list(_short(pd.DataFrame(columns=[c for c in columns if c != "interval"])).columns)
        headers.insert(columns.index("interval"), "95% interval" + (" (log axis)" if log else ""))
        table = Table(headers)
        for (_, row), bar in zip(part.iterrows(), bars):
            key = row_key(row, self.keys)
            external = any(self.external(self.records[i]) for i in self.members[key])
            cells = []
            for column in columns:
                if column == "interval":
                    cells.append(Cell("", sort=_sort_key(row[f"_mean.{self.primary}"]), bar=bar))
                elif column == "arch":
                    cells.append(Cell(str(row["arch"]), href=f"rows/{self.names[key]}", bold=bool(row["_separated"]),
                                      badge="external" if external else ""))
                elif column in metrics:
                    cells.append(Cell(_text(row[column]), sort=_sort_key(row[f"_mean.{column}"])))
                else:
                    cells.append(Cell(_text(row[column]), sort=_sort_key(row[column])))
            table.rows.append(cells)
        return table

    def per_target_table(self, profile: str, runs: pd.DataFrame) -> Table | None:
        if self.per_target is None:
            return None
        part = self.per_target[self.per_target["profile"] == profile]
        part = part.assign(target=[target_label({k: row[f"task.{k}"] for k in self.aggregated})
                                   for _, row in part.iterrows()]).sort_values("target", kind="stable")
        settings = setting_columns(runs, self.aggregate_over)
        columns = ["arch", *_varying(part, ["offset"]), *_varying(part, settings), "budget", "target", self.primary,
                   "ci95", "n", "not_learned"]
        table = Table(list(_short(pd.DataFrame(columns=columns)).columns))
        for _, row in part.iterrows():
            name = self.names.get(row_key(row, self.keys))
            cells = []
            for column in columns:
                if column == "arch":
                    cells.append(Cell(str(row["arch"]), href=f"rows/{name}" if name else None))
                elif column == self.primary:
                    cells.append(Cell(_text(row[column]), sort=_sort_key(row[f"_mean.{column}"])))
                else:
                    cells.append(Cell(_text(row[column]), sort=_sort_key(row[column])))
            table.rows.append(cells)
        return table

    @staticmethod
    def frame_table(frame: pd.DataFrame) -> Table:
        table = Table(list(frame.columns))
        for _, row in frame.iterrows():
            table.rows.append([Cell(_text(row[c]), sort=_sort_key(row[c])) for c in frame.columns])
        return table

    def search_for(self, profile: str, arch: str | None = None) -> dict | None:
        """A searched profile's search table (leaderboard.md's) and its sentences."""
        report = self.searches.get(profile)
        if report is None:
            return None
        frame = report.table()
        if arch is not None:
            frame = frame[frame["arch"] == arch]
        return {"table": self.frame_table(frame), "sentences": report.sentences(),
                "studies": report.studies, "trials": report.trials, "budget": report.budget,
                "sampler": report.profile.search.sampler, "files": [f"search_{profile}.json", f"trials_{profile}.csv"]}

    def protocol(self) -> Table | None:
        frame = protocol_table(self.table, self.df, self.suite, list(self.searches))
        if not len(frame):
            return None
        return self.frame_table(frame.assign(ratio=[f"{r:.3g}" if pd.notna(r) else "—" for r in frame["ratio"]]))

    def tuning_for(self, profile: str, runs: pd.DataFrame, arch: str | None = None) -> Table | None:
        tuning = [r for r in self.tuning if r["profile"] == profile and (arch is None or r["arch"] == arch)
                  and not r.get("trial")]
        if not tuning:
            return None
        used = {a: set(group["train.lr"]) for a, group in runs.groupby("arch")}
        frame = tuning_table(tuning, used)
        table = Table(list(frame.columns))
        for _, row in frame.iterrows():
            table.rows.append([Cell(_text(row[c]), sort=_sort_key(row[c])) for c in frame.columns])
        return table

    def profile_context(self, profile: str, part: pd.DataFrame, figures: list[Path]) -> dict:
        runs = self.df[self.df["profile"] == profile]
        settings = setting_columns(runs, self.aggregate_over)
        varying = _varying(part, settings)
        fixed = {c.removeprefix("task.").removeprefix("train."): _text(runs[c].iloc[0], "none")
                 for c in settings if c not in varying}
        targets = []
        if self.aggregated:
            targets = sorted({target_label({k: row[f"task.{k}"] for k in self.aggregated})
                              for _, row in runs.iterrows()})
        findings = [line[2:] for line in _findings(part, runs, self.primary, self.higher) if line.startswith("- ")]
        return {
            "name": profile,
            "protocol": protocol_line(self.suite, profile, self.searches.get(profile)),
            "search": self.search_for(profile),
            "reproduce": reproduce_commands(runs, self.task, profile),
            "table": self.profile_table(profile, part, runs),
            "fixed": fixed,
            "aggregated_over": target_label({k: k for k in self.aggregated}) if self.aggregated else "",
            "targets": targets,
            "per_target": self.per_target_table(profile, runs),
            "tuning": self.tuning_for(profile, runs),
            "findings": findings,
            "figures": [p.name for p in figures],
            "runs": len(runs),
            "verify": f"cwbench verify {self.task} --profile {profile}",
        }

    def provenance(self, frame: pd.DataFrame) -> dict:
        return {"commits": sorted(frame["git_commit"].unique()), "torch": sorted(frame["torch"].unique()),
                "devices": sorted(frame["device"].unique()), "backends": sorted(frame["backend"].unique()),
                "dates": f"{frame['date'].min()} … {frame['date'].max()}"}

    def external(self, record: RunRecord) -> bool:
        """Made outside this repository (a plugin's, or imported) and not yet reproduced here."""
        return is_external(record.external) and record.run_id not in self.reproduced

    # ---------------------------------------------------------------- row pages
    def row_context(self, row: pd.Series, name: str) -> dict:
        key = row_key(row, self.keys)
        indices = self.members[key]
        records = [self.records[i] for i in indices]
        first = records[0]
        profile = row["profile"]
        targets = [target_label({k: r.task_params.get(k) for k in self.aggregated if k in r.task_params})
                   for r in records]
        order = sorted(range(len(records)), key=lambda i: (targets[i], records[i].seed))
        records, targets = [records[i] for i in order], [targets[i] for i in order]
        metrics = self.metrics()
        seeds = Table(["seed", *(["target"] if self.aggregated else []), "status", "learned", *metrics, "params",
                       "steps", "stopped", "wall_s", "run_id"])
        for r, target in zip(records, targets):
            steps = r.steps_trained if r.steps_trained is not ABSENT else r.epochs_trained
            values = [r.seed, *([target] if self.aggregated else []), r.status, known(r.learned),
                      *(r.metrics.get(m) for m in metrics), r.params, known(steps), known(r.stopped),
                      known(r.wall_time_s), r.run_id]
            seeds.rows.append([Cell(_text(v), sort=_sort_key(v)) for v in values])
        summary = {c.removeprefix("task.").removeprefix("train."): _text(v, "—")
                   for c, v in results_only(row.to_frame().T).iloc[0].items()}
        aggregated_keys = set(self.aggregated)
        task_params = {k: json.dumps(v) if isinstance(v, (list, dict)) else _text(v)
                       for k, v in first.task_params.items() if k not in aggregated_keys}
        model = {k: json.dumps(v) if isinstance(v, (list, dict)) else _text(v, "—") for k, v in first.model.items()}
        train = {k: _text(v, "none") for k, v in first.train.items()}
        runs = self.df[self.df["profile"] == profile]
        # what tells this row from the others of its profile
        varying = _varying(self.table[self.table["profile"] == profile],
                           [c for c in self.keys if c not in ("profile", "arch", "budget")])
        years = sorted(str(r.date)[:4] for r in records if r.date)
        commits = sorted({str(r.git_commit or "unknown") for r in records})
        versions: dict[str, set] = {}
        machines = []
        for r in records:
            for package, version in (r.versions or {}).items():
                versions.setdefault(package, set()).add(str(version))
            if r.machine and r.machine not in machines:
                machines.append(r.machine)
        externals = []  # one bundle imported several runs: say where they came from once
        for r in records:
            if self.external(r) and r.external not in externals:
                externals.append(r.external)
        return {
            "name": name,
            "profile": profile,
            "arch": row["arch"],
            "budget": _text(row["budget"]),
            "settings": {c.removeprefix("task.").removeprefix("train."): _text(row[c]) for c in varying},
            "summary": summary,
            "external": [{k: json.dumps(v) if not isinstance(v, str) else v for k, v in e.items()}
                         for e in externals],
            "model": model,
            "task_params": task_params,
            "train": train,
            "targets": sorted(set(targets)) if self.aggregated else [],
            "aggregated_over": target_label({k: k for k in self.aggregated}) if self.aggregated else "",
            "tuned": self.tuned(profile, row["arch"], runs),
            "seeds": seeds,
            "curve": curve_chart(records, self.primary, [f"seed {r.seed}" + (f" · {t}" if t else "")
                                                         for r, t in zip(records, targets)],
                                 (first.baselines or {}).get(self.primary)),
            "baseline": _text((first.baselines or {}).get(self.primary)),
            "commits": commits,
            "machines": [{k: json.dumps(v) if not isinstance(v, str) else v for k, v in m.items()}
                         for m in machines],
            "devices": sorted({str(r.device or "") for r in records}),
            "backends": sorted({str(r.backend or "unrecorded") for r in records}),
            "versions": {k: ", ".join(sorted(v)) for k, v in sorted(versions.items())},
            "dates": f"{min(r.date or '' for r in records)} … {max(r.date or '' for r in records)}",
            "commands": sorted({r.command for r in records if r.command}),
            "verify": f"cwbench verify {self.task} --profile {profile}",
            "bibtex": row_bibtex(self.task, profile, row["arch"], _text(row["budget"]), name, commits,
                                 self.board_commit, years[-1] if years else "", len(records)),
        }

    def tuned(self, profile_name: str, arch: str, runs: pd.DataFrame) -> dict:
        """The learning rate's search space and choice, from the suite file and tuning.jsonl."""
        try:
            profile = load_profile(self.suite, profile_name)
        except UserInputError:
            return {"state": "gone", "lr": ""}
        lr = profile.arch_train.get(arch, {}).get("lr", profile.train.lr)
        used = sorted({_text(v) for v in runs[runs["arch"] == arch]["train.lr"]})
        if profile.search is not None:
            return {"state": "searched", "lr": ", ".join(used), "search": self.search_for(profile_name, arch)}
        if lr != TUNED:
            return {"state": "fixed", "lr": ", ".join(used)}
        tune = profile.tune
        space = {"grid": ", ".join(f"{v:g}" for v in tune.grid), "seeds": str(tune.seeds),
                 "budget": str(tune.budget or profile.budgets[0]),
                 "steps": str(tune.steps or profile.train.steps)} if tune else {}
        if tune and tune.task_params:
            space["task settings"] = json.dumps(tune.task_params)
        return {"state": "tuned", "lr": ", ".join(used), "space": space,
                "table": self.tuning_for(profile_name, runs, arch)}

    # ---------------------------------------------------------------- writing
    def build(self, env, out: Path, written: list[Path]) -> dict:
        folder = out / slug(self.task)
        profiles = profile_order(self.table["profile"].unique(), self.suite)  # the headline (tuned) first
        figures = figures_of(self.folder, profiles)
        for paths in figures.values():
            for png in paths:
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(png, folder / png.name)
                written.append(folder / png.name)
        sections = [self.profile_context(p, self.table[self.table["profile"] == p], figures[p]) for p in profiles]
        page = {
            "task": self.task, "title": self.suite.get("title", self.task), "primary": self.primary,
            "higher": self.higher, "runs": len(self.records), "profiles": sections,
            "notes": self.suite.get("leaderboard", {}).get("notes", []),
            "left_out": [f"line {x.line}: {x.reason}" for x in self.left_out],
            "provenance": self.provenance(self.df), "aggregated_over": self.aggregate_over,
            "board_commit": self.board_commit, "external_rows": self.external_rows(),
            "protocol": self.protocol(),
        }
        _write(folder / "index.html", env.get_template("task.html.j2").render(page=page, root="../"), written)
        for _, row in self.table.iterrows():
            name = self.names[row_key(row, self.keys)]
            context = self.row_context(row, name)
            _write(folder / "rows" / name,
                   env.get_template("row.html.j2").render(row=context, page=page, root="../../"), written)
        return {"task": self.task, "folder": slug(self.task), "title": page["title"], "primary": self.primary,
                "higher": self.higher, "profiles": profiles, "runs": len(self.records), "rows": len(self.table),
                "external_rows": page["external_rows"]}


def build_site(results_dir: Path, out: Path, log=print) -> list[Path]:
    """Writes the site for every task with stored runs under results_dir into out; returns
    the written paths."""
    results_dir, out = Path(results_dir), Path(out)
    tasks = [t for t in suite_names() if (results_dir / t / "runs.jsonl").is_file()]
    if not tasks:
        raise UserInputError(f"no stored runs under {results_dir}: run `cwbench run TASK` first, or pass "
                             "--results DIR naming a results folder")
    if out.resolve() == results_dir.resolve() or results_dir.resolve().is_relative_to(out.resolve()):
        raise UserInputError(f"site folder {out} holds the results: pass --out with a folder of its own")
    env = _environment()
    board_commit = repository_commit(results_dir)
    prepare_out(out)
    written: list[Path] = []
    entries = []
    for task in tasks:
        site = TaskSite(task, results_dir, board_commit)
        if not site.records:
            log(f"warning: no valid runs for task {task} in {site.store.path}: left off the site")
            continue
        for line in site.left_out:
            log(f"warning: {site.store.path} line {line.line} left out of the site: {line.reason}")
        entries.append(site.build(env, out, written))
    _write(out / "index.html", env.get_template("index.html.j2").render(
        tasks=entries, root="", software=SOFTWARE, software_bibtex=software_bibtex(), board_commit=board_commit),
        written)
    log(f"wrote {len(written)} files to {out} (open {out / 'index.html'})")
    return written
