// The kiosk's enhancements: on-screen keys, and the idle countdown with "continue".
// Every form works without this file; the server also signs an idle person out.
(function () {
  "use strict";

  // On-screen keys type into their field (the scanner and a keyboard still work). A pad
  // may serve several fields (data-keypad="new_pin new_pin_again"): it types into the
  // one last touched, and moves on to the next when one is full.
  function keypads() {
    document.querySelectorAll("[data-keypad]").forEach(function (pad) {
      var inputs = pad.dataset.keypad.split(" ").map(function (id) {
        return document.getElementById(id);
      }).filter(Boolean);
      if (!inputs.length) { return; }
      var current = 0;
      inputs.forEach(function (input, index) {
        input.addEventListener("focus", function () { current = index; });
      });
      pad.hidden = false;
      pad.addEventListener("click", function (event) {
        var key = event.target.closest("[data-key]");
        if (!key) { return; }
        var input = inputs[current];
        var limit = parseInt(input.getAttribute("maxlength") || "64", 10);
        if (key.dataset.key === "back") {
          input.value = input.value.slice(0, -1);
        } else if (key.dataset.key === "clear") {
          input.value = "";
        } else if (input.value.length < limit) {
          input.value += key.dataset.key;
          if (input.value.length === limit && current < inputs.length - 1) {
            inputs[current + 1].focus();
          }
        }
        input.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
  }

  // After `seconds` without a touch the person is signed out; the last part counts down
  // on screen with a "continue" button, which tells the server the person is still here.
  function idle() {
    var banner = document.getElementById("kiosk-idle");
    var signOut = document.getElementById("kiosk-idle-sign-out");
    if (!banner || !signOut) { return; }
    var seconds = parseInt(banner.dataset.seconds, 10) || 60;
    var warn = Math.min(20, Math.ceil(seconds / 2));
    var count = banner.querySelector("[data-countdown]");
    var last = Date.now();
    var told = Date.now();
    var done = false;

    function stillHere(now) {
      if (now - told < 10000) { return; }
      told = now;
      fetch(banner.dataset.stillHere, { credentials: "same-origin", cache: "no-store" });
    }
    function touched() {
      var now = Date.now();
      last = now;
      banner.hidden = true;
      stillHere(now);
    }
    ["pointerdown", "keydown", "input"].forEach(function (name) {
      document.addEventListener(name, touched, true);
    });
    banner.querySelector("[data-continue]").addEventListener("click", function () {
      told = 0;
      touched();
    });
    setInterval(function () {
      if (done) { return; }
      var left = seconds - Math.floor((Date.now() - last) / 1000);
      if (left <= 0) {
        done = true;
        signOut.submit();
      } else if (left <= warn) {
        count.textContent = String(left);
        banner.hidden = false;
      }
    }, 250);
  }

  window.addEventListener("DOMContentLoaded", function () {
    keypads();
    idle();
  });
})();
