// Small, plain JavaScript: the pages work without it; it adds live refresh, a guard against
// double submits and immediate messages for empty required fields.
(function () {
  "use strict";

  // A form is sent once: a second click while it is on its way does nothing.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("data-validate") && !validate(form)) {
      event.preventDefault();
      return;
    }
    if (form.dataset.sent === "true") {
      event.preventDefault();
      return;
    }
    form.dataset.sent = "true";
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    });
  }, true);

  // Required fields: the message is the page's own, in the page's language.
  function validate(form) {
    var first = null;
    form.querySelectorAll("[required]").forEach(function (input) {
      var message = document.getElementById(input.id + "-error");
      var empty = input.value.trim() === "";
      input.setAttribute("aria-invalid", empty ? "true" : "false");
      if (message) message.textContent = empty ? input.dataset.requiredMessage || "" : "";
      if (empty && !first) first = input;
    });
    var boxes = form.querySelectorAll("input[type=checkbox][name=exam]");
    if (boxes.length) {
      var none = !Array.prototype.some.call(boxes, function (b) { return b.checked; });
      var note = document.getElementById("exams-error");
      if (note) note.textContent = none ? form.dataset.chooseMessage || "" : "";
      if (none) first = first || boxes[0];
    }
    if (first) first.focus();
    return !first;
  }

  // Regions marked data-refresh are fetched again every few seconds and replaced when changed.
  document.querySelectorAll("[data-refresh]").forEach(function (region) {
    var url = region.dataset.refresh;
    var interval = parseInt(region.dataset.interval || "2000", 10);
    var last = region.innerHTML;
    function tick() {
      if (document.hidden) return schedule();
      fetch(url, { headers: { "Accept": "text/html" }, cache: "no-store" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          // Never while someone is on it with the keyboard: the swap would drop their focus.
          if (html !== null && html !== last && !region.contains(document.activeElement)) {
            region.innerHTML = html;
            last = html;
          }
        })
        .catch(function () {})
        .then(schedule);
    }
    function schedule() { setTimeout(tick, interval); }
    schedule();
  });
})();
