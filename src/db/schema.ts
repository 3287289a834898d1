import { sql } from 'drizzle-orm';
import { bigint, bigserial, date, index, integer, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';

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
    syncId: bigint('sync_id', { mode: 'number' })
      .notNull()
      .references(() => catalogSyncs.id),
    kind: text('kind').notNull(),
    code: text('code').notNull(),
    version: integer('version').notNull(),
    change: text('change').notNull(),
    fields: text('fields').array().notNull(),
    changedAt: timestamptz('changed_at').notNull().defaultNow(),
  },
  (table) => [index('catalog_history_code').on(table.kind, table.code, table.id)],
);
