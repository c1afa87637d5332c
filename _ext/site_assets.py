"""Serve the widget JavaScript and MathJax from the site itself, not from public CDNs.

`make book` (target `site-assets`) installs the npm packages of package.json and copies
the files the pages need into _build/site-assets/vendor/. When they are there, this
extension

- copies them into the site through ``html_extra_path`` (as ``vendor/...`` at the site's
  root; not through ``_static``, whose every .js Jupyter Book would inject into every page),
  together with _ext/site/vendor/widgets-setup.js, which lets the widget manager find its
  fonts and work with MathJax 3,
- points myst-nb's ``nb_ipywidgets_js`` and Sphinx's ``mathjax_path`` at them,

so the site works offline and in the hermetic browser tests. When they are missing (no
npm), the pages keep the CDN defaults and the build log says so.

It adds the course's stylesheet (_ext/static/course.css) and script (_ext/static/course.js,
which makes the themes' sidebar toggles work and keeps search results to prose: see the file),
lets inline code in tables wrap only at sensible points (`_wbr_in_tables`), and drops
duplicated inline scripts: Sphinx 7.4 files an inline script that an
extension adds once the builder exists twice (as filename None and as ''), and the
second copy of sphinx-thebe's `const THEBE_JS_URL = ...` throws "Identifier has already
been declared" on every page.
"""
import re
from pathlib import Path

from sphinx.util import logging
from sphinx.util.console import bold

ASSETS = Path("_build") / "site-assets"      # relative to the book's root (Sphinx's srcdir)
# Sphinx files a relative script path under _static/; "../" takes it back to the site
# root, and Sphinx then writes it relative to each page: the site works under any URL
# prefix and from file://.
REQUIRE_JS = "vendor/requirejs/require.js"
SETUP_JS = "vendor/widgets-setup.js"          # ours, in _ext/site/: see the file
WIDGETS_JS = "vendor/html-manager/embed-amd.js"
MATHJAX_JS = "vendor/mathjax/tex-mml-chtml.js"

logger = logging.getLogger(__name__)


def local_assets(srcdir) -> Path | None:
    """The staged assets folder, or None when any file the pages need is missing."""
    root = Path(srcdir) / ASSETS
    ok = all((root / f).is_file() for f in (REQUIRE_JS, WIDGETS_JS, MATHJAX_JS))
    return root if ok else None


def _configure(app, config):
    config.html_static_path = [*config.html_static_path, str(Path(__file__).parent / "static")]
    root = local_assets(app.srcdir)
    if root is None:
        logger.info(bold("site assets: ") + f"{ASSETS}/ not found, so the pages load the widget "
                    "manager, RequireJS and MathJax from public CDNs. Install npm and run "
                    "`make book` to serve them from the site itself.")
        return
    config.html_extra_path = [*config.html_extra_path, str(root), str(Path(__file__).parent / "site")]
    # The widget manager (3.6 MB) loads async: it renders the widgets at the window's
    # load event, so it need not hold up DOMContentLoaded (RequireJS, 86 kB, stays
    # blocking, so that `define` exists when the manager runs).
    config.nb_ipywidgets_js = {f"../{REQUIRE_JS}": {}, f"../{SETUP_JS}": {},
                               f"../{WIDGETS_JS}": {"async": "async"}}
    config.mathjax_path = f"../{MATHJAX_JS}"
    logger.info(bold("site assets: ") + f"serving the widget manager, RequireJS and MathJax "
                f"from {ASSETS}/ (copied to vendor/ in the site)")


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", None),
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


# Inline code in a table (the intro's chapter map lists function names) may wrap after an
# underscore, before a dot that follows a word (not `tl.dot`) and between camel-case words, and
# nowhere else (course.css): breaking anywhere let a phone's narrow columns cut
# `generation_time_lower_bound` mid-word.
_TABLE = re.compile(r"<table\b.*?</table>", re.S)
_PRE = re.compile(r'(<span class="pre">)([^<]*)(</span>)')
_BREAK = re.compile(r"(?<=[A-Za-z0-9]_)(?=[A-Za-z0-9])|(?<=[A-Za-z0-9]{4})(?=\.[A-Za-z_])"
                    r"|(?<=[a-z])(?=[A-Z][a-z])")


def _wbr(table_html: str) -> str:
    return _PRE.sub(lambda m: m.group(1) + _BREAK.sub("<wbr>", m.group(2)) + m.group(3), table_html)


def _wbr_in_tables(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and "<table" in body:
        context["body"] = _TABLE.sub(lambda m: _wbr(m.group(0)), body)


def setup(app):
    app.connect("config-inited", _configure)
    app.add_css_file("course.css")
    app.add_js_file("course.js", loading_method="defer")
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", _wbr_in_tables)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
