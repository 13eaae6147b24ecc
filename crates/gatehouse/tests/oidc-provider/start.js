// A real OpenID Connect provider (npm `oidc-provider`) for Gatehouse's SSO tests.
//
// Listens on a free loopback port, prints `ISSUER <url>` on stdout once it serves, and
// exits when its standard input closes (the test that started it ended). Fixed clients and
// accounts; sign-in goes through the package's dev login and consent forms, which the
// tests drive over HTTP.
import http from 'node:http';
import Provider from 'oidc-provider';

// Fixed accounts: `sub`, e-mail, whether the provider says the e-mail is verified, and amr.
const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Upstream' },
  bob: { email: 'bob@example.com', email_verified: true, name: 'Bob Upstream' },
  // The same e-mail as a local account a test creates, but NOT verified upstream: it must
  // never take that account over.
  mallory: { email: 'victim@example.com', email_verified: false, name: 'Mallory' },
  // The same e-mail, verified upstream.
  victim: { email: 'victim@example.com', email_verified: true, name: 'Victim Upstream' },
  carol: { email: 'carol@other.test', email_verified: true, name: 'Carol Elsewhere' },
  // Signs in with MFA upstream (amr contains "mfa").
  dave: { email: 'dave@example.com', email_verified: true, name: 'Dave', amr: ['pwd', 'mfa'] },
};

// Gatehouse's test servers run on ports chosen at start, so any loopback Gatehouse
// callback is an allowed redirect URI for the fixed clients.
const LOOPBACK_CALLBACK = /^http:\/\/127\.0\.0\.1:\d+\/(api\/v1\/auth\/sso\/[a-z0-9-]+\/callback|spa\/callback)$/;

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gatehouse',
        client_secret: 'gatehouse-test-client-secret-0123456789',
        redirect_uris: ['http://127.0.0.1/api/v1/auth/sso/test/callback'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['gatehouse-test-cookie-key-0123456789'] },
    async findAccount(_ctx, sub) {
      const account = ACCOUNTS[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: account.email_verified,
            name: account.name,
          };
        },
      };
    },
  });
  provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err}\n`));
  const allowed = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
    return LOOPBACK_CALLBACK.test(value) || allowed.call(this, value);
  };
  // amr for accounts that signed in with MFA upstream.
  const { IdToken } = provider;
  const issue = IdToken.prototype.issue;
  IdToken.prototype.issue = async function issueWithAmr(...args) {
    const account = ACCOUNTS[this.available.sub];
    if (account?.amr) this.set('amr', account.amr);
    return issue.apply(this, args);
  };
  server.on('request', provider.callback());
  process.stdout.write(`ISSUER ${issuer}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
