// panva's oidc-provider as the token endpoint of a test: one client that authenticates with
// private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9) and uses the client_credentials grant.
//
//   node server.mjs <client_id> <public JWK as JSON> <access token ttl seconds>
//
// Listens on 127.0.0.1, a port the kernel picks, and prints `{"issuer": ...}` once ready.
// Besides the provider's own routes:
//   GET /resource/...  200 {"client"} for `Authorization: Bearer <a live access token>`, else 401
//   GET /stats         {"token_calls", "token_errors"}: how often /token was called, and refused
import { Provider } from 'oidc-provider';

const [clientId, jwkText, ttlText] = process.argv.slice(2);
const jwk = JSON.parse(jwkText);
const ttl = Number(ttlText);
const stats = { token_calls: 0, token_errors: 0 };

const configuration = {
  clients: [
    {
      client_id: clientId,
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: jwk.kty === 'EC' ? 'ES256' : 'RS256',
      jwks: { keys: [jwk] },
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: ttl },
  scopes: ['api:read'],
};

// The issuer needs the port: bind first, then build the provider on that URL.
import http from 'node:http';

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration);
  provider.on('grant.error', () => {
    stats.token_errors += 1;
  });
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    if (req.url === '/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(stats));
      return;
    }
    if (req.url.startsWith('/resource/')) {
      const auth = req.headers.authorization || '';
      const value = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      const token = value ? await provider.ClientCredentials.find(value) : undefined;
      res.setHeader('content-type', 'application/json');
      if (!token || token.isExpired) {
        res.statusCode = 401;
        res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
      }
      res.end(JSON.stringify({ client: token.clientId }));
      return;
    }
    if (req.url.startsWith('/token')) {
      stats.token_calls += 1;
    }
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});
