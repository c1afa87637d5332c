/* The sidebar toggles (the "≡" button and "On this page").

   pydata-sphinx-theme 0.17 puts its own pair of toggles in its (hidden) page header, and
   sphinx-book-theme 1.3 shows another pair in the article header. Both themes' scripts bind
   to `document.querySelector(".primary-toggle")` (and ".secondary-toggle"), which is the
   first, hidden one: a click on the visible buttons did nothing at any width. Forward those
   clicks to the bound button, so that the themes do what they meant to (at narrow widths the
   sidebar opens as a dialog, on a wide screen the navigation collapses and comes back), and
   give the visible buttons the bound ones' accessible names ("Site navigation", "On this
   page"). */
(function () {
  function forward(selector) {
    var bound = document.querySelector(selector);
    if (!bound) return;
    document.querySelectorAll(selector).forEach(function (button) {
      if (button === bound) return;
      if (bound.hasAttribute("aria-label")) {
        button.setAttribute("aria-label", bound.getAttribute("aria-label"));
      }
      button.addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
        // No dialog opened (a wide screen): drop the focus, or its tooltip stays up.
        if (!document.querySelector("dialog[open]")) button.blur();
      });
    });
  }
  function setup() {
    forward(".primary-toggle");
    forward(".secondary-toggle");
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();

/* Search results: under each hit, Sphinx's searchtools.js shows a snippet cut from the text of
   the page it fetches (Search.htmlToText: everything in [role="main"]). With this theme that
   text starts with the launch buttons ("Binder Colab .ipynb .md .pdf") and the page's table of
   contents, and it holds the code cells' toggle labels ("Show code cell source") and their code,
   so snippets read "...Binder" or "Show code cell sour...". Keep only the article, without the
   toggles and the code cells' source (outputs stay: a searched number may be there), so that
   snippets show prose. searchtools.js is a plain script, so `Search` exists when this deferred
   one runs. */
(function () {
  if (typeof Search === "undefined" || typeof Search.htmlToText !== "function") return;
  var htmlToText = Search.htmlToText;
  Search.htmlToText = function (htmlString, anchor) {
    var doc = new DOMParser().parseFromString(htmlString, "text/html");
    var main = doc.querySelector('[role="main"]');
    var article = main && main.querySelector("article");
    if (article) main.replaceChildren(article);
    doc.querySelectorAll("details.hide > summary, div.cell_input").forEach(function (el) {
      el.remove();
    });
    return htmlToText(doc.documentElement.outerHTML, anchor);
  };
})();
