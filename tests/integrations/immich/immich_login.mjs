// Drives authserver with the calls and options Immich's server makes (openid-client v6; written
// for these tests from Immich's documented behaviour, not copied from it).
//
//   node immich_login.mjs authorize '<config json>'           -> {"url", "state", "codeVerifier"}
//   node immich_login.mjs callback  '<config json>' '<json>'  -> {"profile", "sid", "fromIdToken"}
//
// config: {issuerUrl, clientId, clientSecret, scope, redirectUri, signingAlgorithm}
// The callback's JSON: {"url": the redirect the browser landed on, "state", "codeVerifier"}.
import {
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  calculatePKCECodeChallenge,
  ClientSecretPost,
  discovery,
  fetchUserInfo,
  randomPKCECodeVerifier,
  randomState,
  skipSubjectCheck,
} from "openid-client";

const [mode, configText, callbackText] = process.argv.slice(2);
const config = JSON.parse(configText);

const client = await discovery(
  new URL(config.issuerUrl),
  config.clientId,
  { client_secret: config.clientSecret, response_types: ["code"], id_token_signed_response_alg: config.signingAlgorithm },
  ClientSecretPost(config.clientSecret),
  { execute: config.issuerUrl.startsWith("http://") ? [allowInsecureRequests] : [], timeout: 10 },
);
const pkce = client.serverMetadata().supportsPKCE();

if (mode === "authorize") {
  // No nonce, as Immich sends none; PKCE only when discovery says S256 is supported.
  const state = randomState();
  const codeVerifier = randomPKCECodeVerifier();
  const params = { redirect_uri: config.redirectUri, scope: config.scope, state };
  if (pkce) {
    params.code_challenge = await calculatePKCECodeChallenge(codeVerifier);
    params.code_challenge_method = "S256";
  }
  console.log(JSON.stringify({ url: buildAuthorizationUrl(client, params).toString(), state, codeVerifier }));
} else {
  const callback = JSON.parse(callbackText);
  const tokens = await authorizationCodeGrant(client, new URL(callback.url), {
    expectedState: callback.state,
    pkceCodeVerifier: pkce ? callback.codeVerifier : undefined,
  });
  const idClaims = tokens.claims();
  // Immich takes the ID token's claims when they carry the email, else asks userinfo.
  const fromIdToken = Boolean(idClaims && "email" in idClaims);
  const profile = fromIdToken ? idClaims : await fetchUserInfo(client, tokens.access_token, skipSubjectCheck);
  console.log(JSON.stringify({ profile, sid: idClaims?.sid, fromIdToken }));
}
