// A public client (a phone app) signing in with PAR + DPoP + PKCE through openid-client v6, and
// the attacks on its tokens made with oauth4webapi's own proofs. Written for these tests.
//
//   node dpop_par_flow.mjs '<config json>'
//
// config: {issuer, clientId, otherClientId, redirectUri, scope}
// The browser's part (login, consent) is the test's: for each {"browse": url} line this prints,
// it answers on stdin with one line {"status", "location"} of where the browser ended. The last
// line printed is {"results": {...}}: what each step answered, for the test to judge.
import * as readline from "node:readline";
import * as oauth from "oauth4webapi";
import {
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrlWithPAR,
  calculatePKCECodeChallenge,
  customFetch,
  discovery,
  fetchProtectedResource,
  fetchUserInfo,
  getDPoPHandle,
  None,
  randomDPoPKeyPair,
  randomPKCECodeVerifier,
  randomState,
  refreshTokenGrant,
} from "openid-client";

const config = JSON.parse(process.argv[2]);
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function browse(url) {
  console.log(JSON.stringify({ browse: url.toString() }));
  const { value } = await lines.next();
  return JSON.parse(value);
}

// Every request the libraries send, with its headers, so that a proof can be sent again as is.
const sent = [];
const recording = (url, options) => {
  sent.push({ url: url.toString(), method: options.method, headers: new Headers(options.headers) });
  return fetch(url, options);
};

const client = await discovery(new URL(config.issuer), config.clientId, undefined, None(), {
  execute: [allowInsecureRequests],
  timeout: 10,
});
client[customFetch] = recording;
const keyPair = await randomDPoPKeyPair("ES256");
const dpop = getDPoPHandle(client, keyPair);
const results = {};

async function outcome(promise) {
  try {
    const value = await promise;
    return { ok: true, value };
  } catch (error) {
    return {
      ok: false,
      name: error.constructor.name,
      error: error.error ?? error.cause?.error ?? error.code,
      status: error.status ?? error.response?.status ?? error.cause?.status,
      description: error.error_description ?? error.message,
    };
  }
}

async function signIn(parameters, options) {
  const verifier = randomPKCECodeVerifier();
  const state = randomState();
  const url = await buildAuthorizationUrlWithPAR(
    client,
    {
      redirect_uri: config.redirectUri,
      scope: config.scope,
      state,
      code_challenge: await calculatePKCECodeChallenge(verifier),
      code_challenge_method: "S256",
      ...parameters,
    },
    options,
  );
  return { url, verifier, state };
}

// 1. PAR + DPoP + PKCE: the pushed request carries a proof, so the code is bound to the key.
const first = await signIn({}, { DPoP: dpop });
results.authorizationUrl = first.url.toString();
const landed = await browse(first.url);
const tokens = await authorizationCodeGrant(
  client,
  new URL(landed.location),
  { pkceCodeVerifier: first.verifier, expectedState: first.state },
  undefined,
  { DPoP: dpop },
);
results.tokenType = tokens.token_type;
results.hasRefresh = Boolean(tokens.refresh_token);
const sub = tokens.claims().sub;
results.userinfo = await fetchUserInfo(client, tokens.access_token, sub, { DPoP: dpop });

// 2. A refresh with the bound key, then userinfo with the new token.
const refreshed = await refreshTokenGrant(client, tokens.refresh_token, undefined, { DPoP: dpop });
results.refreshedTokenType = refreshed.token_type;
results.userinfoAfterRefresh = (await fetchUserInfo(client, refreshed.access_token, sub, { DPoP: dpop })).sub;
const access = refreshed.access_token;

// 3. A stolen token: as a bearer token, and with the thief's own DPoP key.
results.stolenAsBearer = await outcome(fetchUserInfo(client, access, sub));
const thief = getDPoPHandle(client, await randomDPoPKeyPair("ES256"));
results.stolenWithAnotherKey = await outcome(fetchUserInfo(client, access, sub, { DPoP: thief }));
// A stolen refresh token with the thief's key.
results.stolenRefresh = await outcome(refreshTokenGrant(client, refreshed.refresh_token, undefined, { DPoP: thief }));

// 4. A proof sent again: the last userinfo request replayed with its very headers.
await fetchUserInfo(client, access, sub, { DPoP: dpop });
const last = sent.filter((request) => request.url.endsWith("/oauth/userinfo")).at(-1);
const replay = await fetch(last.url, { method: last.method, headers: last.headers });
results.replayedProof = { status: replay.status, challenge: replay.headers.get("www-authenticate") };

// 5. Proofs the library made for another URL and for another method, presented at userinfo.
async function proofFor(url, method) {
  const before = sent.length;
  await outcome(fetchProtectedResource(client, access, new URL(url), method, undefined, undefined, { DPoP: dpop }));
  return sent.slice(before).find((request) => request.url === url).headers.get("dpop");
}
const userinfoUrl = client.serverMetadata().userinfo_endpoint;
async function presentAtUserinfo(proof) {
  const answer = await fetch(userinfoUrl, { headers: { authorization: `DPoP ${access}`, dpop: proof } });
  return { status: answer.status, challenge: answer.headers.get("www-authenticate") };
}
results.proofForAnotherUrl = await presentAtUserinfo(await proofFor(`${config.issuer}/api/me`, "GET"));
results.proofForAnotherMethod = await presentAtUserinfo(await proofFor(userinfoUrl, "DELETE"));

// 6. A stale proof: oauth4webapi with its clock ten minutes behind makes the iat.
const as = await oauth.processDiscoveryResponse(
  new URL(config.issuer),
  await oauth.discoveryRequest(new URL(config.issuer), { [oauth.allowInsecureRequests]: true }),
);
const laggingClient = { client_id: config.clientId, [oauth.clockSkew]: -600 };
const lagging = oauth.DPoP(laggingClient, keyPair);
const stale = await oauth.userInfoRequest(as, laggingClient, access, {
  DPoP: lagging,
  [oauth.allowInsecureRequests]: true,
});
results.staleIat = { status: stale.status, challenge: stale.headers.get("www-authenticate") };
const current = oauth.DPoP({ client_id: config.clientId }, keyPair);
const fresh = await oauth.userInfoRequest(as, { client_id: config.clientId }, access, {
  DPoP: current,
  [oauth.allowInsecureRequests]: true,
});
results.oauth4webapiUserinfo = fresh.status;

// 7. The request_uri of step 1 used again, and one used by another client.
results.requestUriAgain = await browse(first.url);
const second = await signIn({}, { DPoP: dpop });
const borrowed = new URL(second.url);
borrowed.searchParams.set("client_id", config.otherClientId);
results.requestUriOfAnotherClient = await browse(borrowed);

// 8. A pushed request with a redirect URI that is not registered: refused at the push, as JSON.
results.badRedirect = await outcome(signIn({ redirect_uri: "https://evil.example/callback" }, { DPoP: dpop }));

console.log(JSON.stringify({ results }));
process.exit(0);
