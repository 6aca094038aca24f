// Passkeys: asks the browser's authenticator (navigator.credentials) for the forms that carry
// data-passkey="create" or "get" and their server-made options, puts its answer (JSON) in the
// form's hidden "credential" field and submits the form. A file of its own, not an inline
// script, so the Content-Security-Policy stays script-src 'self'; without JavaScript every other
// form on the page still works and these stay hidden.
(function () {
  "use strict";

  function fromB64url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return { type: d.type, id: fromB64url(d.id), transports: d.transports };
    });
  }

  function creationOptions(o) {
    var options = Object.assign({}, o);
    options.challenge = fromB64url(o.challenge);
    options.user = Object.assign({}, o.user, { id: fromB64url(o.user.id) });
    options.excludeCredentials = descriptors(o.excludeCredentials);
    return options;
  }

  function requestOptions(o) {
    var options = Object.assign({}, o);
    options.challenge = fromB64url(o.challenge);
    options.allowCredentials = descriptors(o.allowCredentials);
    return options;
  }

  function asJSON(credential) {
    var r = credential.response, response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      response.userHandle = r.userHandle ? toB64url(r.userHandle) : null;
    }
    return {
      id: credential.id, rawId: toB64url(credential.rawId), type: credential.type, response: response,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function ceremony(form) {
    var kind = form.getAttribute("data-passkey");
    var options = JSON.parse(form.getAttribute("data-options"));
    var error = form.querySelector("[data-passkey-error]");
    var asked = kind === "create"
      ? navigator.credentials.create({ publicKey: creationOptions(options) })
      : navigator.credentials.get({ publicKey: requestOptions(options) });
    asked.then(function (credential) {
      form.querySelector("input[name=credential]").value = JSON.stringify(asJSON(credential));
      form.submit();
    }, function (reason) {
      if (error) {
        error.textContent = "The passkey was not used (" + (reason && reason.name || "cancelled") +
          "). Try again, or use another way to sign in.";
        error.hidden = false;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) { return; }
    document.querySelectorAll("[data-passkey-only]").forEach(function (el) { el.hidden = false; });
    document.querySelectorAll("form[data-passkey]").forEach(function (form) {
      form.querySelectorAll("[data-passkey-button]").forEach(function (el) { el.hidden = false; });
      form.querySelectorAll("[data-passkey-nojs]").forEach(function (el) { el.hidden = true; });
      form.addEventListener("submit", function (event) {
        if (form.querySelector("input[name=credential]").value) { return; }
        event.preventDefault();
        ceremony(form);
      });
      if (form.hasAttribute("data-autostart")) { ceremony(form); }
    });
  });
})();
