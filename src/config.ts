import { Ajv } from 'ajv';
import envSchema from 'env-schema';
import Type from 'typebox';

/**
 * The gateway's whole configuration: one JSON Schema over the environment, validated at boot.
 * Later domains add their variables here, so that `gateway --help`, the README table and the
 * validation all come from one place.
 */
export const ConfigSchema = Type.Object(
  {
    HOST: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Interface to listen on.' }),
    PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535, description: 'TCP port to listen on.' }),
    DATABASE_URL: Type.String({
      default: './data/pglite',
      minLength: 1,
      pattern: '^(postgres(ql)?://.+|memory://.*|[^:]+)$',
      description:
        'postgres://… uses PostgreSQL (postgres.js); a directory path or memory:// uses embedded PGlite.',
    }),
    DATABASE_POOL_MAX: Type.Integer({
      default: 10,
      minimum: 1,
      maximum: 200,
      description: 'Connections in the PostgreSQL pool (ignored by PGlite, which has one).',
    }),
    LOG_LEVEL: Type.Unsafe<'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'>({
      type: 'string',
      enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      description: 'pino log level.',
    }),
    LOG_PRETTY: Type.Optional(
      Type.Boolean({ description: 'Pretty-print logs. Defaults to true when stdout is a terminal.' }),
    ),
    BODY_LIMIT: Type.Integer({
      default: 1_048_576,
      minimum: 1024,
      maximum: 104_857_600,
      description: 'Largest accepted request body, in bytes.',
    }),
    TRUST_PROXY: Type.Union([Type.Boolean(), Type.String({ minLength: 1 })], {
      default: false,
      description: 'Fastify trustProxy: true, or a comma-separated list of proxy addresses/CIDRs.',
    }),
    REQUEST_TIMEOUT_MS: Type.Integer({
      default: 30_000,
      minimum: 1000,
      description: 'Longest time a request may take to arrive in full (408 after it). A connection silent for longer, such as a download the client stopped reading, is dropped.',
    }),
    KEEP_ALIVE_TIMEOUT_MS: Type.Integer({
      default: 72_000,
      minimum: 1000,
      description: 'Idle keep-alive timeout (longer than typical load balancers).',
    }),
    MAX_CONNECTIONS: Type.Integer({
      default: 10_000,
      minimum: 0,
      description: 'Open connections per process (each worker) above which a new connection is answered 503 overloaded, with Retry-After, and closed before its request is read; 0 turns it off.',
    }),
    WORKERS: Type.Integer({
      default: 0,
      minimum: 0,
      maximum: 256,
      description: 'Worker processes (node:cluster) sharing the port. 0: one per available core on PostgreSQL, one on PGlite (which allows no more).',
    }),
    SHUTDOWN_GRACE_MS: Type.Integer({
      default: 10_000,
      minimum: 100,
      description: 'How long a graceful shutdown waits for in-flight requests.',
    }),
    MAX_EVENT_LOOP_DELAY_MS: Type.Integer({
      default: 1000,
      minimum: 0,
      description: 'Shed load (503 + Retry-After) above this event-loop delay; 0 turns it off.',
    }),
    MAX_EVENT_LOOP_UTILIZATION: Type.Number({
      default: 0,
      minimum: 0,
      maximum: 1,
      description:
        'Shed load above this event-loop utilisation (0..1); 0 (the default) turns it off, since a saturated but responsive loop is serving at full speed.',
    }),
    CATALOG_DIR: Type.Optional(
      Type.String({ minLength: 1, description: 'Folder of catalog YAML files. Defaults to the catalog/ shipped with the gateway.' }),
    ),
    CATALOG_SYNC_ON_START: Type.Boolean({
      default: true,
      description: 'Sync the catalog files into the database at start-up (an invalid catalog keeps the last good one).',
    }),
    TOKEN_ISSUER: Type.Optional(
      Type.String({ minLength: 1, description: 'The `iss` of the access tokens this gateway signs and accepts. Defaults to PUBLIC_URL; on PostgreSQL one of the two is required (every instance must share it).' }),
    ),
    TOKEN_AUDIENCE: Type.String({
      default: 'govdata-gateway',
      minLength: 1,
      description: 'The `aud` of the access tokens this gateway signs and accepts (RFC 9068).',
    }),
    TOKEN_TTL_SECONDS: Type.Integer({
      default: 900,
      minimum: 60,
      maximum: 86_400,
      description: 'Access token lifetime.',
    }),
    TOKEN_SIGNING_ALG: Type.Unsafe<'EdDSA' | 'ES256'>({
      type: 'string',
      enum: ['EdDSA', 'ES256'],
      default: 'EdDSA',
      description: 'Algorithm of the gateway signing keys (new keys; old ones keep theirs).',
    }),
    TOKEN_RATE_LIMIT_PER_MINUTE: Type.Integer({
      default: 60,
      minimum: 1,
      description: 'Token requests a client may make per minute.',
    }),
    CLOCK_TOLERANCE_SECONDS: Type.Integer({
      default: 5,
      minimum: 0,
      maximum: 300,
      description: 'Leeway for `exp`, `nbf` and `iat` when verifying tokens.',
    }),
    KEY_ENCRYPTION_KEY: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_-]{43}=?$',
        description:
          '32 random bytes, base64url: encrypts the signing keys at rest. Required on PostgreSQL; on a PGlite directory one is made beside it (<dir>.kek) when unset.',
      }),
    ),
    AUDIT_HASH_KEY: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_-]{43}=?$',
        description:
          '32 random bytes, base64url: keys the HMAC that stands for a person in the audit trail. Required on PostgreSQL; on a PGlite directory one is made beside it (<dir>.audit-key).',
      }),
    ),
    AUDIT_BATCH_MAX: Type.Integer({
      default: 500,
      minimum: 1,
      maximum: 5000,
      description: 'Most audit records written in one insert (group commit).',
    }),
    AUDIT_CHECKPOINT_EVERY: Type.Integer({
      default: 1000,
      minimum: 1,
      description: 'Sign a checkpoint of the audit chain every this many records…',
    }),
    AUDIT_CHECKPOINT_SECONDS: Type.Integer({
      default: 60,
      minimum: 1,
      description: '…or every this many seconds when there are new records.',
    }),
    AUDIT_RETENTION_MONTHS: Type.Integer({
      default: 0,
      minimum: 0,
      description: 'Drop audit months older than this once they are exported (0 keeps everything).',
    }),
    AUDIT_VERIFY_HOURS: Type.Integer({
      default: 6,
      minimum: 0,
      maximum: 720,
      description: 'Verify every audit chain in full in the background this often (one instance at a time); 0: only on demand (the supervision page, `gateway audit verify`).',
    }),
    SUPERVISOR_AGENCIES: Type.String({
      default: '',
      description: 'Comma-separated agency codes whose audit:read covers every agency (电子监察). Unset on the embedded demo (DEMO_DATA=auto on PGlite): zj-dsj, the demo supervisor.',
    }),
    SHARING_MAX_DURATION_DAYS: Type.Integer({
      default: 365,
      minimum: 1,
      maximum: 3650,
      description: 'Longest grant an application may ask for.',
    }),
    SHARING_DECISION_WORKING_DAYS: Type.Integer({
      default: 10,
      minimum: 1,
      maximum: 60,
      description: 'Working days a provider has to decide a conditional application.',
    }),
    PUBLIC_HOLIDAYS: Type.String({
      default: '',
      pattern: '^(\\d{4}-\\d{2}-\\d{2}(,\\d{4}-\\d{2}-\\d{2})*)?$',
      description: 'Comma-separated public holidays (YYYY-MM-DD) that do not count as working days.',
    }),
    MAKEUP_WORKDAYS: Type.String({
      default: '',
      pattern: '^(\\d{4}-\\d{2}-\\d{2}(,\\d{4}-\\d{2}-\\d{2})*)?$',
      description: 'Comma-separated weekend days that are working days (调休), YYYY-MM-DD.',
    }),
    DEMO_DATA: Type.Unsafe<'auto' | 'off'>({
      type: 'string',
      enum: ['auto', 'off'],
      default: 'auto',
      description: 'auto: on an embedded PGlite database whose demo resources are empty, load the small demo data at start-up, and the open demo data (divisions of China; the villages in the background); on a PGlite directory also the demo clients, their ids and secrets in demo-credentials.json beside it.',
    }),
    OPEN_DATA_DIR: Type.String({
      default: './data/downloads',
      minLength: 1,
      description: 'Where whole-dataset download files are prebuilt after each import (served with Range).',
    }),
    OPEN_PREBUILD: Type.Boolean({
      default: true,
      description: 'Prebuild every open dataset\'s download files (gzip beside each) after an import and at start-up.',
    }),
    OPEN_FETCH_ROWS: Type.Integer({
      default: 2000,
      minimum: 100,
      maximum: 50_000,
      description: 'Rows fetched from the database cursor at a time while a download streams.',
    }),
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: Type.Integer({
      default: 300,
      minimum: 1,
      description: 'Open-data requests an anonymous caller (one IP address) may make per minute.',
    }),
    RATE_LIMIT_CLIENT_PER_MINUTE: Type.Integer({
      default: 3000,
      minimum: 1,
      description: 'Open-data requests a client with a token may make per minute.',
    }),
    REDIS_URL: Type.Optional(
      Type.String({
        pattern: '^rediss?://',
        description: 'Redis for rate-limit counts shared by every instance (redis://host:6379). Unset: each instance counts alone.',
      }),
    ),
    TRUSTED_ISSUERS: Type.String({
      default: '[]',
      description:
        'JSON array of external token issuers: {issuer, jwks_uri, audience, algorithms, kind: agency|citizen, agency_claim | person_claim, scope_claim?, typ?}.',
    }),
    SIGN_IN_ISSUERS: Type.String({
      default: '[]',
      description:
        'JSON array of OpenID providers people sign in with (code + PKCE): {name, label?, kind: agency|citizen, issuer, client_id, client_secret, scope?, agency_claim | person_claim, scope_claim?}. On the embedded demo, the demo identity provider under /demo-idp is added.',
    }),
    SESSION_IDLE_MINUTES: Type.Integer({
      default: 30,
      minimum: 1,
      maximum: 1440,
      description: 'A signed-in session ends after this long without a request.',
    }),
    SESSION_MAX_HOURS: Type.Integer({
      default: 8,
      minimum: 1,
      maximum: 168,
      description: 'A signed-in session ends this long after sign-in, however busy.',
    }),
    PUBLIC_URL: Type.Optional(
      Type.String({
        pattern: '^https?://[^/]+(/.*)?$',
        description: 'Public base URL, used in links and metadata. Defaults to http://HOST:PORT.',
      }),
    ),
  },
  { additionalProperties: true },
);

export type Config = Type.Static<typeof ConfigSchema>;

/** An external OpenID provider whose tokens the gateway accepts (TRUSTED_ISSUERS). */
export const TrustedIssuerSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1 }),
    jwks_uri: Type.String({ pattern: '^https?://' }),
    audience: Type.String({ minLength: 1 }),
    algorithms: Type.Array(
      Type.Unsafe<string>({ type: 'string', enum: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] }),
      { minItems: 1 },
    ),
    kind: Type.Unsafe<'agency' | 'citizen'>({ type: 'string', enum: ['agency', 'citizen'] }),
    agency_claim: Type.Optional(Type.String({ minLength: 1 })),
    person_claim: Type.Optional(Type.String({ minLength: 1 })),
    scope_claim: Type.Optional(Type.String({ minLength: 1 })),
    typ: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
  },
  { additionalProperties: false },
);
export type TrustedIssuer = Type.Static<typeof TrustedIssuerSchema>;
const TrustedIssuers = Type.Array(TrustedIssuerSchema);

/**
 * An OpenID provider people sign in with (SIGN_IN_ISSUERS): officials of agencies (`kind: agency`,
 * their agency and roles from claims, as TRUSTED_ISSUERS maps them for tokens) or citizens
 * (`kind: citizen`, the person from `person_claim`).
 */
export const SignInIssuerSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9-]{1,32}$', description: 'Short name, in /login?issuer=' }),
    label: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    kind: Type.Unsafe<'agency' | 'citizen'>({ type: 'string', enum: ['agency', 'citizen'] }),
    issuer: Type.String({ pattern: '^https?://' }),
    client_id: Type.String({ minLength: 1 }),
    client_secret: Type.String({ minLength: 1 }),
    scope: Type.Optional(Type.String({ minLength: 1 })),
    agency_claim: Type.Optional(Type.String({ minLength: 1 })),
    person_claim: Type.Optional(Type.String({ minLength: 1 })),
    scope_claim: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);
export type SignInIssuer = Type.Static<typeof SignInIssuerSchema>;
const validateSignInIssuers = new Ajv({ allErrors: true }).compile(Type.Array(SignInIssuerSchema));

/** SIGN_IN_ISSUERS parsed and checked; a bad entry names its index and field. */
export function signInIssuers(config: Config): SignInIssuer[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config.SIGN_IN_ISSUERS);
  } catch {
    throw new ConfigError('SIGN_IN_ISSUERS: is not valid JSON');
  }
  if (!validateSignInIssuers(parsed)) {
    const first = validateSignInIssuers.errors?.[0] as AjvErrorLike;
    const where = first.instancePath + (first.keyword === 'required' ? `/${String(first.params.missingProperty)}` : '');
    throw new ConfigError(`SIGN_IN_ISSUERS${where}: ${explain(first)}`);
  }
  const names = new Set<string>();
  for (const [index, entry] of (parsed as SignInIssuer[]).entries()) {
    const claim = entry.kind === 'agency' ? 'agency_claim' : 'person_claim';
    if (!entry[claim]) throw new ConfigError(`SIGN_IN_ISSUERS/${index}: a ${entry.kind} issuer needs ${claim}`);
    if (names.has(entry.name)) throw new ConfigError(`SIGN_IN_ISSUERS/${index}/name: ${entry.name} is named twice`);
    names.add(entry.name);
  }
  return parsed as SignInIssuer[];
}

/** Names of the variables this schema knows, for the README table and error messages. */
export const configVariables = Object.keys(ConfigSchema.properties) as Array<keyof Config>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

interface AjvErrorLike {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** A variable of the schema set to the empty string is not set, as twelve-factor services read it: its default applies. */
function withoutEmpty(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const known = new Set<string>(configVariables);
  return Object.fromEntries(Object.entries(env).filter(([name, value]) => !(value === '' && known.has(name))));
}

/**
 * Validate an environment (process.env by default) and return the typed configuration.
 * A bad value throws a ConfigError whose message is one line naming the variable and what is
 * wrong; values are not echoed back since some variables hold secrets. An empty value means unset.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  let config: Config;
  try {
    config = envSchema<Config>({ schema: ConfigSchema, data: withoutEmpty(env), env: false });
  } catch (error) {
    const errors = (error as { errors?: AjvErrorLike[] }).errors;
    if (!errors?.length) throw error;
    throw new ConfigError(describeConfigErrors(errors));
  }
  trustedIssuers(config);
  signInIssuers(config);
  return config;
}

const validateTrustedIssuers = new Ajv({ allErrors: true }).compile(TrustedIssuers);

/** TRUSTED_ISSUERS parsed and checked; a bad entry names its index and field. */
export function trustedIssuers(config: Config): TrustedIssuer[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config.TRUSTED_ISSUERS);
  } catch {
    throw new ConfigError('TRUSTED_ISSUERS: is not valid JSON');
  }
  if (!validateTrustedIssuers(parsed)) {
    const first = validateTrustedIssuers.errors?.[0] as AjvErrorLike;
    const where = first.instancePath + (first.keyword === 'required' ? `/${String(first.params.missingProperty)}` : '');
    throw new ConfigError(`TRUSTED_ISSUERS${where}: ${explain(first)}`);
  }
  for (const [index, entry] of (parsed as TrustedIssuer[]).entries()) {
    const claim = entry.kind === 'agency' ? 'agency_claim' : 'person_claim';
    if (!entry[claim]) throw new ConfigError(`TRUSTED_ISSUERS/${index}: a ${entry.kind} issuer needs ${claim}`);
  }
  return parsed as TrustedIssuer[];
}

function describeConfigErrors(errors: AjvErrorLike[]): string {
  // A union reports one error per branch; the first error per variable is the useful one.
  const byVariable = new Map<string, string>();
  for (const error of errors) {
    const variable = error.instancePath.replace(/^\//, '').split('/')[0] || String(error.params.missingProperty);
    if (byVariable.has(variable)) continue;
    byVariable.set(variable, explain(error));
  }
  return [...byVariable].map(([variable, problem]) => `${variable}: ${problem}`).join('; ');
}

function explain(error: AjvErrorLike): string {
  switch (error.keyword) {
    case 'anyOf':
      return 'is not one of the allowed forms';
    case 'enum':
      return `must be one of ${(error.params.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return 'has the wrong form';
    default:
      return error.message ?? 'is invalid';
  }
}

/** The URL clients reach this gateway at. */
/**
 * The `iss` this gateway signs and accepts: TOKEN_ISSUER, else PUBLIC_URL. On PostgreSQL one of
 * them must be set, because every instance and worker on the database must sign and accept the
 * same issuer (a default of each one's own HOST:PORT would make them refuse each other's tokens).
 */
export function tokenIssuer(config: Config): string {
  if (config.TOKEN_ISSUER) return config.TOKEN_ISSUER;
  if (!config.PUBLIC_URL && /^postgres(ql)?:\/\//.test(config.DATABASE_URL)) {
    throw new ConfigError('PUBLIC_URL or TOKEN_ISSUER: one is required with PostgreSQL, so that every instance signs and accepts the same token issuer');
  }
  return publicUrl(config);
}

/** SUPERVISOR_AGENCIES as a set of agency codes: their officials with audit:read see every agency's. */
export function supervisorAgencies(config: Config): ReadonlySet<string> {
  return new Set(config.SUPERVISOR_AGENCIES.split(',').map((code) => code.trim()).filter(Boolean));
}

export function publicUrl(config: Config): string {
  if (config.PUBLIC_URL) return config.PUBLIC_URL.replace(/\/$/, '');
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.PORT}`;
}
