"""Offer only the launch buttons that work on each page.

sphinx-book-theme gives every notebook page a Binder and a Colab button, both derived from
`repository` in _config.yml. A chapter is a MyST Markdown notebook (book/NN-slug.md): Binder
opens it as a notebook (binder/ installs jupytext and myst-nb for it), but Colab opens only
.ipynb files from a repository, so a Colab button there would lead to an error page. This
removes the Colab button from pages whose source is not an .ipynb; the exercise notebooks
keep both.
"""

NOT_IPYNB_ONLY = {"Colab"}   # launchers that open .ipynb files only


def _drop_launchers(app, pagename, templatename, context, doctree):
    if context.get("page_source_suffix") == ".ipynb":
        return
    buttons = context.get("header_buttons") or []
    for group in [b for b in buttons if b.get("label") == "launch-buttons"]:
        group["buttons"] = [b for b in group.get("buttons", []) if b.get("text") not in NOT_IPYNB_ONLY]
        if not group["buttons"]:
            buttons.remove(group)


def setup(app):
    # After the theme's add_launch_buttons (priority 501), before the page is rendered.
    app.connect("html-page-context", _drop_launchers, priority=550)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
