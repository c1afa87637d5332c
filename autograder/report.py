"""What an instructor asks after a deadline: how is the class doing on each assignment, which
tests fail most, and which mistakes (the catalogue's, named) explain the failures.

`write_reports` writes one static page per assignment beside `grades.csv`
(`report-<assignment>.html`: plots embedded as images, no network needed) and returns a
brief for the terminal. Everything comes from the trusted results: verdict messages are
what the students' feedback shows, never a hidden test's source.
"""
from __future__ import annotations

import base64
import collections
import html
import io
import json
import re
import statistics
from pathlib import Path

from . import catalogue
from .chapters import all_chapters

_HINT = re.compile(r"Hint: (.*)", re.S)


def _mistakes(chapter) -> dict[str, list]:
    try:
        wrongs = catalogue.load(chapter.reference).WRONG
    except Exception:  # a missing catalogue only costs the names
        return {}
    out = collections.defaultdict(list)
    for w in wrongs:
        out[w.function].append(w)
    return out


def _cause(message: str, wrongs: list) -> str:
    """The catalogue mistake a failure message names, else its hint, else its first line."""
    named = [w for w in wrongs if w.hint and w.hint in message]
    if named:
        return named[0].mistake
    hint = _HINT.search(message)
    return (hint.group(1) if hint else message).strip().splitlines()[0][:200]


def summarise(results, chapter) -> dict:
    """The numbers of one assignment's page (and of the test that checks it against grades.csv)."""
    graded = [r for r in results if not r.grader_error]
    scores = [r.score for r in graded]
    tests = collections.OrderedDict((t.grade_id, [0, 0, t.function, t.hidden]) for t in chapter.tests.values())
    causes = collections.defaultdict(collections.Counter)
    wrongs = _mistakes(chapter)
    for r in graded:
        for v in r.verdicts:
            if v.grade_id in tests:
                tests[v.grade_id][1] += 1
                tests[v.grade_id][0] += bool(v.passed)
        seen = set()
        for v in r.verdicts:
            if not v.passed and v.message and not r.error:
                cause = _cause(v.message, wrongs.get(v.function, []))
                if (v.function, cause) not in seen:  # one student counts once per cause
                    seen.add((v.function, cause))
                    causes[v.function][cause] += 1
    zeros = [{"student": r.student, "why": r.error or (r.cell_errors[0] if r.cell_errors else "every test failed")}
             for r in graded if r.score == 0 and (r.error or any("limit" in e or "stopped" in e for e in r.cell_errors))]
    return {
        "assignment": chapter.slug, "submissions": len(results), "graded": len(graded),
        "not_graded": len(results) - len(graded), "max_score": sum(t.points for t in chapter.tests.values()),
        "mean": round(statistics.fmean(scores), 3) if scores else None,
        "median": statistics.median(scores) if scores else None,
        "full_marks": sum(r.score == r.max_score for r in graded),
        "scores": scores,
        "pass_rate": {gid: (p / n if n else None) for gid, (p, n, _, _) in tests.items()},
        "test_function": {gid: f for gid, (_, _, f, _) in tests.items()},
        "test_hidden": {gid: h for gid, (_, _, _, h) in tests.items()},
        "causes": {fn: c.most_common(5) for fn, c in causes.items()},
        "zeros_to_follow_up": zeros,
        "seconds": [r.seconds for r in graded],
    }


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(summary: dict) -> tuple[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3))
    top = summary["max_score"] or 1
    ax.hist(summary["scores"], bins=range(0, int(top) + 2), align="left", color="#3b6ea5", edgecolor="white")
    ax.set_xlabel("score")
    ax.set_ylabel("students")
    ax.set_title(f"{summary['assignment']}: scores of {summary['graded']} submissions", fontsize=11)
    hist = _figure_png(fig)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.hist(summary["seconds"], bins=20, color="#7a9a3b", edgecolor="white")
    ax.set_xlabel("seconds to grade one submission")
    ax.set_ylabel("submissions")
    return hist, _figure_png(fig)


def render(summary: dict) -> str:
    e = html.escape
    hist, times = _plots(summary)
    rows = "".join(
        f"<tr><td>{e(gid)}</td><td>{e(summary['test_function'][gid])}</td>"
        f"<td>{'hidden' if summary['test_hidden'][gid] else 'visible'}</td>"
        f"<td><span class='bar' style='width:{(rate or 0) * 8:.1f}em'></span> "
        f"{'-' if rate is None else f'{rate:.0%}'}</td></tr>"
        for gid, rate in summary["pass_rate"].items())
    causes = "".join(
        f"<h3>{e(fn)}</h3><ol>" + "".join(f"<li>{e(cause)} <b>({n} student{'s' * (n != 1)})</b></li>"
                                           for cause, n in top) + "</ol>"
        for fn, top in summary["causes"].items())
    zeros = "".join(f"<li>{e(z['student'])}: {e(z['why'][:300])}</li>" for z in summary["zeros_to_follow_up"])
    data = html.escape(json.dumps({k: summary[k] for k in ("assignment", "submissions", "graded", "mean",
                                                         "median", "full_marks", "scores")}))
    sec = summary["seconds"]
    timing = (f"median {statistics.median(sec):.1f} s, slowest {max(sec):.1f} s" if sec else "none graded")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Class report: {e(summary['assignment'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
.bar{{display:inline-block;height:.8em;background:#3b6ea5}}img{{max-width:100%;height:auto}}
.table-scroll{{overflow-x:auto}}li{{overflow-wrap:anywhere}}</style></head>
<body data-summary="{data}">
<h1>Class report: {e(summary['assignment'])}</h1>
<p>{summary['submissions']} submissions, {summary['graded']} graded
{f"({summary['not_graded']} not graded: grader errors, see grades.csv)" if summary['not_graded'] else ""};
mean score <b>{summary['mean'] if summary['mean'] is not None else '-'}</b> of {summary['max_score']},
median {summary['median'] if summary['median'] is not None else '-'};
{summary['full_marks']} with full marks.</p>
<img src="{hist}" alt="histogram of the scores">
<h2>Pass rate per test</h2>
<div class="table-scroll"><table><tr><th>test</th><th>function</th><th>kind</th><th>passed</th></tr>{rows}</table></div>
<h2>What went wrong most often</h2>
<p>Per function, the causes the failures name (the catalogue's mistakes where a hint matches one),
counted once per student.</p>
{causes or "<p>No failures.</p>"}
<h2>Zero because of a limit or a malformed notebook</h2>
<p>Worth a word with these students: their score may not reflect their understanding.</p>
<ul>{zeros or "<li>none</li>"}</ul>
<h2>Time per submission</h2>
<p>{timing}.</p>
<img src="{times}" alt="histogram of grading times">
</body></html>
"""


def write_reports(results, work: Path) -> tuple[list[Path], str]:
    """One page per assignment beside grades.csv, and a brief for the terminal."""
    by_slug = collections.defaultdict(list)
    for r in results:
        by_slug[r.assignment].append(r)
    chapters = {c.slug: c for c in all_chapters()}
    pages, brief = [], []
    for slug in sorted(by_slug):
        chapter = chapters.get(slug)
        if chapter is None:
            continue
        summary = summarise(by_slug[slug], chapter)
        path = work / f"report-{slug}.html"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(render(summary), encoding="utf-8")
        tmp.replace(path)
        pages.append(path)
        worst = sorted((r, g) for g, r in summary["pass_rate"].items() if r is not None)[:2]
        top = [(fn, c[0]) for fn, c in summary["causes"].items() if c]
        top.sort(key=lambda x: -x[1][1])
        line = (f"{slug}: {summary['graded']} graded, mean {summary['mean']} / {summary['max_score']}, "
                f"{summary['full_marks']} full marks")
        if worst:
            line += "; hardest tests: " + ", ".join(f"{g} ({r:.0%})" for r, g in worst)
        if top:
            fn, (cause, n) = top[0]
            line += f"; most common mistake: {fn}: {cause[:80]} ({n})"
        brief.append(line)
    return pages, "\n".join(brief)
