// Runs between RequireJS and the ipywidgets HTML manager (see _ext/site_assets.py).
(function () {
  "use strict";
  // 1. The manager works out where its own fonts lie from the URL RequireJS gives its
  //    module, by default relative to the page; map the module to where the site serves it.
  var me = document.currentScript && document.currentScript.src;
  if (me && window.require && window.require.config) {
    var base = me.replace(/widgets-setup\.js(\?.*)?$/, "html-manager");
    window.require.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
  }
  // 2. ipywidgets typesets labels with MathJax 2's MathJax.Hub.Queue; the site runs
  //    MathJax 3, which has MathJax.typesetPromise instead. Give it a Hub that forwards.
  var hub = {
    Queue: function (job) {
      var mj = window.MathJax, element = job && job[2];
      if (mj && mj.typesetPromise) {
        mj.typesetPromise(element ? [element] : undefined).catch(function () {});
      }
    },
  };
  var mj = window.MathJax;
  if (!mj) return;                       // a page without math: ipywidgets skips typesetting
  mj.Hub = mj.Hub || hub;                // before MathJax has loaded (the config object) ...
  if (!mj.version) {                     // ... and after: MathJax 3 replaces the global
    mj.startup = mj.startup || {};
    var ready = mj.startup.ready;
    mj.startup.ready = function () {
      (ready || window.MathJax.startup.defaultReady)();
      window.MathJax.Hub = window.MathJax.Hub || hub;
    };
  }
})();
