// The admin console's only script: Copy buttons and confirmations. Served from /admin/static (CSP: no inline script).
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // A page answered to a POST (the one showing a new token) gets its GET address: a reload must not rotate again.
  if (document.body.dataset.canonical) { history.replaceState(null, "", document.body.dataset.canonical); }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      var said = button.getAttribute("aria-describedby");
      var status = said ? document.getElementById(said) : null;
      function done(text) { if (status) { status.textContent = text; } }
      field.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { done("Copied"); }, function () {
          done(document.execCommand("copy") ? "Copied" : "Press Ctrl+C to copy");
        });
      } else {
        done(document.execCommand("copy") ? "Copied" : "Press Ctrl+C to copy");
      }
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });
  var fresh = document.getElementById("token");
  if (fresh) { fresh.focus(); fresh.select(); }
});
