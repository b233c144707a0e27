// Steward Points pages: small enhancements only; every form works without this file.
(function () {
  "use strict";

  // A form that moves points is sent once: its button is disabled after the first tap.
  // (The idempotency key in the form makes a second send harmless anyway.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sent === "1") { event.preventDefault(); return; }
    form.dataset.sent = "1";
    form.querySelectorAll("button[type=submit], button:not([type])").forEach(function (b) {
      b.disabled = true;
    });
  });

  // Print buttons.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-print]");
    if (button) { event.preventDefault(); window.print(); }
  });

  // The error summary takes the focus, so screen readers read it first.
  window.addEventListener("DOMContentLoaded", function () {
    var summary = document.querySelector("[data-focus]");
    if (summary) { summary.focus(); }
  });
})();
