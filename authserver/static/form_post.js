// OAuth 2.0 Form Post Response Mode: send the authorization response to the app at once.
// A file of its own, not an inline script, so the Content-Security-Policy stays script-src 'self'.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("form-post");
  if (form) { form.submit(); }
});
