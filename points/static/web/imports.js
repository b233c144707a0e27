// An import run's page: follows the run every 2 s while it runs, then shows its result.
// Without this file the page has a refresh link.
(function () {
  "use strict";
  window.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("progress");
    if (!box) { return; }
    var bar = document.getElementById("run-progress");
    var done = document.getElementById("rows-done");
    var total = document.getElementById("rows-total");
    function follow() {
      fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (state) {
          if (state && state.status !== "running") { window.location.reload(); return; }
          if (state) {
            bar.max = Math.max(state.rows_total, 1);
            bar.value = state.rows_done;
            bar.textContent = state.rows_done;
            done.textContent = state.rows_done;
            total.textContent = state.rows_total;
          }
          window.setTimeout(follow, 2000);
        })
        .catch(function () { window.setTimeout(follow, 2000); });
    }
    window.setTimeout(follow, 2000);
  });
})();
