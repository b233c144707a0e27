// Steward Points pages: small enhancements only; every form works without this file.
(function () {
  "use strict";

  // A form that moves points is sent once: its button is disabled after the first tap.
  // (The idempotency key in the form makes a second send harmless anyway.)
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.sent === "1") { event.preventDefault(); return; }
    form.dataset.sent = "1";
    // A disabled button is left out of what the form sends: the pressed one's name and
    // value (which row, which decision) go along in a hidden field instead.
    var pressed = event.submitter;
    if (pressed && pressed.name) {
      var kept = document.createElement("input");
      kept.type = "hidden";
      kept.name = pressed.name;
      kept.value = pressed.value;
      form.appendChild(kept);
    }
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
    // A screen that follows something changing on its own (the activity's rotating
    // check-in code) reloads itself; a meta refresh would also move a reader's place.
    var follow = document.querySelector("[data-reload-seconds]");
    if (follow) {
      window.setTimeout(function () { window.location.reload(); },
        1000 * Number(follow.getAttribute("data-reload-seconds")));
    }
  });
})();
