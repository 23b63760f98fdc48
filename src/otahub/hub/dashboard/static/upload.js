// The firmware upload form: sent with XHR so the progress bar shows how much of
// the file has gone; the CSRF token travels in a header, checked before the body.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new FormData(form);
    var token = data.get("csrf");
    data.delete("csrf");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        bar.value = Math.round((100 * e.loaded) / e.total);
        status.textContent = "Uploading: " + bar.value + " %";
      }
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
      if (xhr.status === 201) {
        bar.value = 100;
        status.textContent = "Uploaded.";
        window.location.assign(body.location);
      } else {
        status.textContent = "Refused: " + (body.detail || xhr.statusText);
        status.className = "error";
      }
    });
    xhr.addEventListener("error", function () {
      status.textContent = "The upload failed (connection lost).";
      status.className = "error";
    });
    bar.value = 0;
    status.textContent = "Uploading…";
    xhr.send(data);
  });
})();
