// Verify a Web Bot Auth request with Cloudflare's `web-bot-auth` package, using the public key
// from the proxy's key directory. Input (argv[2], JSON): {method, url, headers, directory}.
// Prints {"keyid", "thumbprint", "label"} on success; exits 1 with the reason otherwise.
import { readFileSync } from "node:fs";
import { helpers, jwkToKeyID, verify } from "web-bot-auth";
import { verifierFromJWK } from "web-bot-auth/crypto";

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const request = new Request(input.url, { method: input.method, headers: input.headers });
try {
  let seen;
  for (const jwk of input.directory.keys) {
    const thumbprint = await jwkToKeyID(jwk, helpers.WEBCRYPTO_SHA256, helpers.BASE64URL_DECODE);
    const verifyWithKey = await verifierFromJWK(jwk);
    await verify(request, async (data, signature, params) => {
      if (params.keyid !== thumbprint) throw new Error("keyid is not this key's thumbprint");
      await verifyWithKey(data, signature, params);
      seen = { keyid: params.keyid, thumbprint, tag: params.tag };
    });
  }
  if (!seen) throw new Error("no key in the directory");
  console.log(JSON.stringify(seen));
} catch (error) {
  console.error(String(error));
  process.exit(1);
}
