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
      description: 'Longest time a request may take to arrive in full.',
    }),
    KEEP_ALIVE_TIMEOUT_MS: Type.Integer({
      default: 72_000,
      minimum: 1000,
      description: 'Idle keep-alive timeout (longer than typical load balancers).',
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

/**
 * Validate an environment (process.env by default) and return the typed configuration.
 * A bad value throws a ConfigError whose message is one line naming the variable and what is
 * wrong; values are not echoed back since some variables hold secrets.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return envSchema<Config>({ schema: ConfigSchema, data: env, env: false });
  } catch (error) {
    const errors = (error as { errors?: AjvErrorLike[] }).errors;
    if (!errors?.length) throw error;
    throw new ConfigError(describeConfigErrors(errors));
  }
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
export function publicUrl(config: Config): string {
  if (config.PUBLIC_URL) return config.PUBLIC_URL.replace(/\/$/, '');
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? 'localhost' : config.HOST;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.PORT}`;
}
