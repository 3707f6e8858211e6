// Progressive enhancement only: every page works without this file.
// - A button with data-confirm asks before its form is sent.
// - A <table data-sortable> is not touched (sorting happens on the server).
"use strict";
document.addEventListener("submit", function (event) {
  var button = event.submitter;
  var message = (button && button.getAttribute("data-confirm")) || event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
