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
