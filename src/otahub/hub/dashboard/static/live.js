// Live parts of a page: an element with data-live="<url>" gets its content
// replaced by each server-sent event of that stream (already throttled by the hub).
(function () {
  "use strict";
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var source = new EventSource(el.getAttribute("data-live"));
    var update = function (ev) {
      el.innerHTML = ev.data;
      el.setAttribute("data-live-updates", String(Number(el.getAttribute("data-live-updates") || 0) + 1));
    };
    ["overview", "rollout"].forEach(function (name) { source.addEventListener(name, update); });
    window.addEventListener("pagehide", function () { source.close(); });
  });
})();
