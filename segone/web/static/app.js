// segone dashboard: draws every chart on the page from its data-chart option (JSON built by
// the server), again after HTMX swaps a fragment in, and resizes them with the window.
// No inline script anywhere: the Content-Security-Policy allows scripts from this site only.
(function () {
  "use strict";
  var palette = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

  function draw(root) {
    if (typeof echarts === "undefined") { return; }
    var nodes = (root || document).querySelectorAll("[data-chart]");
    nodes.forEach(function (el) {
      var option;
      try { option = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      if (!option.color) { option.color = palette; }
      var chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option, true);
      el.setAttribute("data-drawn", "1");
    });
  }

  function disposeIn(root) {
    if (typeof echarts === "undefined") { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var c = echarts.getInstanceByDom(el);
      if (c) { c.dispose(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:beforeSwap", function (ev) {
    if (ev.detail && ev.detail.target) { disposeIn(ev.detail.target); }
  });
  document.addEventListener("htmx:afterSettle", function (ev) {
    draw(ev.detail && ev.detail.elt ? ev.detail.elt : document);
  });
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (typeof echarts === "undefined") { return; }
      document.querySelectorAll("[data-chart]").forEach(function (el) {
        var c = echarts.getInstanceByDom(el);
        if (c) { c.resize(); }
      });
    }, 150);
  });
})();
