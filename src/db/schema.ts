import { sql } from 'drizzle-orm';
import { bigint, bigserial, date, doublePrecision, index, integer, jsonb, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';

const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * Facts about this installation that must survive restarts: its id (made on the first start),
 * and later what other domains need to remember between runs.
 */
export const installation = pgTable('installation', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  updatedAt: timestamptz('updated_at').notNull().defaultNow(),
});

/** What every catalog row keeps: the validated file, its hash, its version and its life. */
const versionedDocument = () => ({
  document: jsonb('document').notNull(),
  contentHash: text('content_hash').notNull(),
  version: integer('version').notNull().default(1),
  retiredAt: timestamptz('retired_at'),
  createdAt: timestamptz('created_at').notNull().defaultNow(),
  updatedAt: timestamptz('updated_at').notNull().defaultNow(),
});

/** Agencies as the catalog files describe them; `document` is the validated file. */
export const agencies = pgTable('agencies', {
  code: text('code').primaryKey(),
  abbr: text('abbr').notNull(),
  name: text('name').notNull(),
  nameEn: text('name_en').notNull(),
  level: text('level').notNull(),
  region: text('region').notNull(),
  ...versionedDocument(),
});

/**
 * Catalog resources (信息资源). The columns are what search, filters and facets read; `document`
 * is the whole validated resource as served. A resource that leaves the files is retired
 * (`retired_at`), never deleted: grants and audit records keep naming it.
 */
export const resources = pgTable(
  'resources',
  {
    code: text('code').primaryKey(),
    provider: text('provider')
      .notNull()
      .references(() => agencies.code),
    name: text('name').notNull(),
    title: text('title').notNull(),
    theme: text('theme').notNull(),
    sharing: text('sharing').notNull(),
    open: text('open').notNull(),
    keywords: text('keywords').array().notNull(),
    published: date('published', { mode: 'string' }).notNull(),
    /** name, title, summary, description and keywords, lower-cased: what `q` searches. */
    searchText: text('search_text').notNull(),
    ...versionedDocument(),
  },
  (table) => [
    index('resources_search_trgm').using('gin', sql`${table.searchText} gin_trgm_ops`),
    index('resources_provider').on(table.provider),
    index('resources_theme').on(table.theme),
    index('resources_open').on(table.open),
  ],
);

/** One row per catalog sync that changed or checked the catalog. */
export const catalogSyncs = pgTable('catalog_syncs', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  source: text('source').notNull(),
  contentHash: text('content_hash').notNull(),
  created: integer('created').notNull(),
  updated: integer('updated').notNull(),
  retired: integer('retired').notNull(),
  unchanged: integer('unchanged').notNull(),
  syncedAt: timestamptz('synced_at').notNull().defaultNow(),
});

/** What changed in the catalog, when, and in which sync: one row per agency or resource change. */
export const catalogHistory = pgTable(
  'catalog_history',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** The sync that made the change; null for a data import. */
    syncId: bigint('sync_id', { mode: 'number' }).references(() => catalogSyncs.id),
    kind: text('kind').notNull(),
    code: text('code').notNull(),
    version: integer('version').notNull(),
    change: text('change').notNull(),
    fields: text('fields').array().notNull(),
    /** For an import: rows, checksum, seconds, skipped rows. */
    detail: jsonb('detail'),
    changedAt: timestamptz('changed_at').notNull().defaultNow(),
  },
  (table) => [index('catalog_history_code').on(table.kind, table.code, table.id)],
);

/**
 * OAuth clients: systems of an agency. A client authenticates with a secret (stored only as a
 * scrypt hash) or with private_key_jwt against the public JWKS it registered.
 */
export const clients = pgTable(
  'clients',
  {
    id: text('id').primaryKey(),
    agency: text('agency')
      .notNull()
      .references(() => agencies.code),
    name: text('name').notNull(),
    scopes: text('scopes').array().notNull(),
    authMethod: text('auth_method').notNull(),
    secretHash: text('secret_hash'),
    jwks: jsonb('jwks'),
    status: text('status').notNull().default('active'),
    createdAt: timestamptz('created_at').notNull().defaultNow(),
    updatedAt: timestamptz('updated_at').notNull().defaultNow(),
    disabledAt: timestamptz('disabled_at'),
  },
  (table) => [index('clients_agency').on(table.agency)],
);

/**
 * The gateway's token-signing keys. The private JWK is encrypted (AES-256-GCM) with the key
 * encryption key from the environment; the public JWK stays published until `publish_until`.
 */
export const signingKeys = pgTable('signing_keys', {
  kid: text('kid').primaryKey(),
  alg: text('alg').notNull(),
  publicJwk: jsonb('public_jwk').notNull(),
  privateJwkEncrypted: text('private_jwk_encrypted').notNull(),
  createdAt: timestamptz('created_at').notNull().defaultNow(),
  /** Set when a newer key takes over signing. */
  retiredAt: timestamptz('retired_at'),
  /** Retired keys stay in the JWKS until every token they signed has expired. */
  publishUntil: timestamptz('publish_until'),
});

/** Revoked access tokens by `jti`, kept until they would have expired anyway. */
export const revokedTokens = pgTable(
  'revoked_tokens',
  {
    jti: text('jti').primaryKey(),
    clientId: text('client_id').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    revokedAt: timestamptz('revoked_at').notNull().defaultNow(),
  },
  (table) => [index('revoked_tokens_expires').on(table.expiresAt)],
);

/** Client assertions already used (RFC 7523 §3: a `jti` is never accepted twice). */
export const usedClientAssertions = pgTable(
  'used_client_assertions',
  {
    clientId: text('client_id').notNull(),
    jti: text('jti').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
  },
  (table) => [primaryKey({ columns: [table.clientId, table.jti] }), index('used_client_assertions_expires').on(table.expiresAt)],
);

/**
 * The audit trail: one row per exchange, refusal, token, decision or catalog change, committed
 * before the answer leaves. Rows form one hash chain per gateway instance (`chain_id`, `seq`,
 * `prev_hash`, `hash`). Partitioned by month (see the migration), so that old months can be
 * exported and dropped.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: text('id').notNull(),
    chainId: text('chain_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    prevHash: text('prev_hash').notNull(),
    hash: text('hash').notNull(),
    occurredAt: timestamptz('occurred_at').notNull(),
    requestId: text('request_id'),
    clientId: text('client_id'),
    agency: text('agency'),
    onBehalfOf: text('on_behalf_of'),
    action: text('action').notNull(),
    resource: text('resource'),
    provider: text('provider'),
    purpose: text('purpose'),
    legalBasis: text('legal_basis'),
    grantId: text('grant_id'),
    /** Keyed hashes (HMAC) of the persons whose records were touched: never the raw keys. */
    subjectRefs: text('subject_refs').array(),
    fields: text('fields').array(),
    rowCount: integer('row_count'),
    outcome: text('outcome').notNull(),
    status: integer('status'),
    reason: text('reason'),
    latencyMs: doublePrecision('latency_ms'),
    bytes: bigint('bytes', { mode: 'number' }),
    clientAddress: text('client_address'),
  },
  (table) => [
    primaryKey({ columns: [table.chainId, table.seq, table.occurredAt] }),
    index('audit_events_time').on(table.occurredAt),
    index('audit_events_agency_time').on(table.agency, table.occurredAt),
    index('audit_events_provider_time').on(table.provider, table.occurredAt),
    index('audit_events_subjects').using('gin', table.subjectRefs),
    index('audit_events_id').on(table.id),
  ],
);

/** One row per chain: an instance's run of the gateway. */
export const auditChains = pgTable('audit_chains', {
  chainId: text('chain_id').primaryKey(),
  instance: text('instance').notNull(),
  startedAt: timestamptz('started_at').notNull().defaultNow(),
});

/** Signed chain heads: `signature` is a JWS over the checkpoint by a gateway signing key. */
export const auditCheckpoints = pgTable(
  'audit_checkpoints',
  {
    chainId: text('chain_id').notNull(),
    seq: bigint('seq', { mode: 'number' }).notNull(),
    headHash: text('head_hash').notNull(),
    signedAt: timestamptz('signed_at').notNull(),
    kid: text('kid').notNull(),
    signature: text('signature').notNull(),
  },
  (table) => [primaryKey({ columns: [table.chainId, table.seq] })],
);

/** Months written to an export file that verified: only these may be dropped by retention. */
export const auditExports = pgTable('audit_exports', {
  month: text('month').primaryKey(),
  file: text('file').notNull(),
  sha256: text('sha256').notNull(),
  records: integer('records').notNull(),
  /** Per chain, the last record of the month: where verification picks up after the month is dropped. */
  chainHeads: jsonb('chain_heads').notNull(),
  exportedAt: timestamptz('exported_at').notNull().defaultNow(),
});

/**
 * The trail counted by hour, for the supervision dashboard: one row per hour, calling agency,
 * provider, resource, action, outcome, refusal reason and latency bucket (`bucket`, the index of
 * LATENCY_BUCKETS_MS in src/audit/rollup.ts that the latency fell in; -1 when none was taken).
 * Written in the same transaction as the records it counts, so it never disagrees with them.
 * Empty strings stand for absent values (a primary key has no nulls).
 */
export const auditHourly = pgTable(
  'audit_hourly',
  {
    hour: timestamptz('hour').notNull(),
    agency: text('agency').notNull(),
    provider: text('provider').notNull(),
    resource: text('resource').notNull(),
    action: text('action').notNull(),
    outcome: text('outcome').notNull(),
    reason: text('reason').notNull(),
    bucket: integer('bucket').notNull(),
    count: bigint('count', { mode: 'number' }).notNull(),
  },
  (table) => [
    primaryKey({ columns: [table.hour, table.agency, table.provider, table.resource, table.action, table.outcome, table.reason, table.bucket] }),
    index('audit_hourly_agency_hour').on(table.agency, table.hour),
    index('audit_hourly_provider_hour').on(table.provider, table.hour),
  ],
);

/**
 * Sessions of people ended by sign-out before their cookie would expire: a copy of the sealed
 * cookie (kept by a proxy, a shared computer, malware) signs nobody in after it. Kept until the
 * session's absolute timeout (`expires_at`), when the cookie is refused by its own time anyway.
 */
export const endedSessions = pgTable(
  'ended_sessions',
  {
    sid: text('sid').primaryKey(),
    endedAt: timestamptz('ended_at').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
  },
  (table) => [index('ended_sessions_expires').on(table.expiresAt)],
);

/** Full verifications of the audit chains (scheduled every AUDIT_VERIFY_HOURS, or asked for): their result. */
export const auditVerifications = pgTable(
  'audit_verifications',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    /** The instance that ran it. */
    instance: text('instance').notNull(),
    /** 'schedule' or 'demand' (a supervisor's "verify now"). */
    trigger: text('trigger').notNull(),
    startedAt: timestamptz('started_at').notNull(),
    finishedAt: timestamptz('finished_at'),
    chains: integer('chains'),
    chainsValid: integer('chains_valid'),
    records: bigint('records', { mode: 'number' }),
    /** The problems found (kind, chain, seq), at most a hundred. */
    problems: jsonb('problems'),
    /** Why it could not finish, when it could not. */
    error: text('error'),
  },
  (table) => [index('audit_verifications_started').on(table.startedAt)],
);

/** Applications (共享申请): a consumer agency asks to use a resource, for a purpose, under a law. */
export const applications = pgTable(
  'applications',
  {
    id: text('id').primaryKey(),
    agency: text('agency')
      .notNull()
      .references(() => agencies.code),
    clientId: text('client_id'),
    resource: text('resource')
      .notNull()
      .references(() => resources.code),
    provider: text('provider').notNull(),
    fields: text('fields').array().notNull(),
    mode: text('mode').notNull(),
    purpose: text('purpose').notNull(),
    legalBasis: text('legal_basis').notNull(),
    durationDays: integer('duration_days').notNull(),
    status: text('status').notNull(),
    dueAt: timestamptz('due_at'),
    createdAt: timestamptz('created_at').notNull(),
    decidedAt: timestamptz('decided_at'),
    decidedBy: text('decided_by'),
    reason: text('reason'),
    grantId: text('grant_id'),
  },
  (table) => [
    index('applications_agency').on(table.agency, table.createdAt),
    index('applications_provider_status').on(table.provider, table.status, table.dueAt),
  ],
);

/** Grants (授权): what an approval gives — who, which resource and fields, how, why, until when. */
export const grants = pgTable(
  'grants',
  {
    id: text('id').primaryKey(),
    agency: text('agency')
      .notNull()
      .references(() => agencies.code),
    clientId: text('client_id'),
    resource: text('resource')
      .notNull()
      .references(() => resources.code),
    provider: text('provider').notNull(),
    fields: text('fields').array().notNull(),
    mode: text('mode').notNull(),
    purpose: text('purpose').notNull(),
    legalBasis: text('legal_basis').notNull(),
    applicationId: text('application_id').notNull(),
    validFrom: timestamptz('valid_from').notNull(),
    validUntil: timestamptz('valid_until').notNull(),
    revokedAt: timestamptz('revoked_at'),
    revokedBy: text('revoked_by'),
  },
  (table) => [index('grants_agency_resource').on(table.agency, table.resource), index('grants_provider').on(table.provider)],
);

/**
 * The DDL the gateway generated from the catalog for the record tables (schema `records`, one
 * table per hosted resource): what was applied, for which version of which resource, and when.
 */
export const recordMigrations = pgTable('record_migrations', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  resource: text('resource').notNull(),
  version: integer('version').notNull(),
  statements: text('statements').array().notNull(),
  appliedAt: timestamptz('applied_at').notNull().defaultNow(),
});

/**
 * Terms of conditional open datasets (有条件开放) accepted by a client for its agency: which terms
 * (their SHA-256, so that changed terms must be accepted again), by whom, when, with what purpose.
 */
export const openTermsAcceptances = pgTable(
  'open_terms_acceptances',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    resource: text('resource')
      .notNull()
      .references(() => resources.code),
    termsSha256: text('terms_sha256').notNull(),
    agency: text('agency')
      .notNull()
      .references(() => agencies.code),
    clientId: text('client_id').notNull(),
    purpose: text('purpose').notNull(),
    requestId: text('request_id').notNull(),
    acceptedAt: timestamptz('accepted_at').notNull().defaultNow(),
  },
  (table) => [index('open_terms_resource_agency').on(table.resource, table.agency, table.termsSha256)],
);
