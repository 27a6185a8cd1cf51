// Small, plain JavaScript: the pages work without it; it adds live updates, a guard against
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
    if (form.hasAttribute("data-upload")) {
      var input = form.querySelector("input[type=file]");
      if (!input.files.length) {
        event.preventDefault();
        input.focus();
        return;
      }
      event.preventDefault();
      upload(form, input.files[0]);
    }
    form.dataset.sent = "true";
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true;
      b.setAttribute("aria-busy", "true");
    });
  }, true);

  // A file goes up with a progress bar; the page then shows it (or says why not).
  function upload(form, file) {
    var progress = form.querySelector("progress");
    var request = new XMLHttpRequest();
    request.open("POST", form.getAttribute("action"));
    request.setRequestHeader("X-Requested-With", "fetch");
    request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    progress.hidden = false;
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) progress.value = Math.round(100 * e.loaded / e.total);
    });
    request.addEventListener("load", function () {
      var codes = { 415: "attachType", 413: "attachSize", 400: "attachInvalid", 422: "attachInvalid", 409: "attachClosed" };
      location.href = request.status === 201 ? "/examiner?notice=attached" : "/examiner?error=" + (codes[request.status] || "attach");
    });
    request.addEventListener("error", function () { location.href = "/examiner?error=attach"; });
    var body = new FormData();
    body.append("file", file, file.name);
    request.send(body);
  }

  // Drag and drop onto a form's drop zone: the file is chosen and sent.
  document.querySelectorAll("form[data-upload]").forEach(function (form) {
    var zone = form.querySelector(".dropzone");
    var input = form.querySelector("input[type=file]");
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      if (!e.dataTransfer.files.length) return;
      input.files = e.dataTransfer.files;
      form.requestSubmit();
    });
  });

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

  // Regions marked data-live get their new HTML pushed (server-sent events through the page's
  // server); the browser reconnects by itself with the last id. Refused or unsupported, they
  // fall back to asking again every few seconds (data-refresh).
  function live(region, fallback) {
    if (!window.EventSource) return fallback();
    var source = new EventSource(region.dataset.live);
    var waiting = null;
    function show(html) {
      // Never while someone is on it with the keyboard: the swap would drop their focus.
      if (region.contains(document.activeElement)) { waiting = html; return; }
      waiting = null;
      region.innerHTML = html;
    }
    region.addEventListener("focusout", function () {
      setTimeout(function () { if (waiting !== null) show(waiting); }, 0);
    });
    source.addEventListener("rows", function (event) { show(event.data); });
    source.addEventListener("open", function () { region.dataset.liveState = "open"; });
    source.addEventListener("error", function () {
      region.dataset.liveState = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
      // CLOSED: the server refused (too many live views, signed out): ask the old way.
      if (source.readyState === EventSource.CLOSED) fallback();
    });
  }

  // Regions marked data-refresh are fetched again every few seconds and replaced when changed.
  document.querySelectorAll("[data-refresh]").forEach(function (region) {
    if (region.dataset.live) return live(region, function () { poll(region); });
    poll(region);
  });

  function poll(region) {
    var url = region.dataset.refresh;
    var interval = parseInt(region.dataset.interval || "2000", 10);
    var last = region.innerHTML;
    var tag = null;
    function tick() {
      if (document.hidden) return schedule();
      // With the last answer's ETag, an unchanged region answers 304 (not ok: nothing to swap).
      var headers = { "Accept": "text/html" };
      if (tag) headers["If-None-Match"] = tag;
      fetch(url, { headers: headers, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) return null;
          tag = response.headers.get("ETag");
          return response.text();
        })
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
  }
})();
