import Type from 'typebox';
import { agencyLevels, itemFormats, itemTypes, openTypes, resourceFormats, sharingMethods, sharingTypes, themes, updateCycles } from '../model/catalog.js';

const literalUnion = <T extends readonly string[]>(values: T, description: string) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values], description });

export const ContactPoint = Type.Object({
  name: Type.String(),
  email: Type.String(),
  phone: Type.Optional(Type.String()),
});

export const AgencyView = Type.Object(
  {
    code: Type.String({ description: 'Agency code, e.g. zj-edu' }),
    name: Type.String({ description: 'Chinese name' }),
    name_en: Type.String(),
    level: literalUnion(agencyLevels, 'Administrative level'),
    region: Type.String({ description: 'Division code (GB/T 2260) of the region it serves' }),
    homepage: Type.Optional(Type.String()),
  },
  { $id: 'Agency' },
);

export const DataItemView = Type.Object({
  name: Type.String(),
  title: Type.String(),
  title_en: Type.String(),
  type: literalUnion(itemTypes, 'Value type'),
  format: Type.Optional(literalUnion(itemFormats, 'Value format standard')),
  personal: Type.Boolean(),
  sensitive: Type.Boolean(),
  required: Type.Boolean(),
  filterable: Type.Boolean(),
  max_length: Type.Optional(Type.Integer()),
  description: Type.Optional(Type.String()),
});

const Sharing = Type.Object({
  type: literalUnion(sharingTypes, '共享属性'),
  conditions: Type.Optional(Type.String()),
  legal_basis: Type.Optional(Type.String()),
  methods: Type.Array(literalUnion(sharingMethods, 'How the resource is shared')),
});

const Open = Type.Object({
  type: literalUnion(openTypes, '开放属性'),
  conditions: Type.Optional(Type.String()),
  legal_basis: Type.Optional(Type.String()),
  license: Type.Optional(Type.String()),
});

const summaryProperties = {
  code: Type.String({ description: 'Resource code (信息资源代码)' }),
  name: Type.String({ description: 'Chinese name' }),
  title: Type.String({ description: 'English title' }),
  summary: Type.String(),
  provider: Type.String({ description: 'Provider agency code' }),
  provider_name: Type.String(),
  theme: literalUnion(themes, 'Theme'),
  format: literalUnion(resourceFormats, 'Resource format'),
  update_cycle: literalUnion(updateCycles, '更新周期'),
  published: Type.String({ format: 'date' }),
  keywords: Type.Array(Type.String()),
  sharing: Sharing,
  open: Open,
  version: Type.Integer({ description: 'Bumped on every change of the catalog entry' }),
  modified: Type.String({ format: 'date-time' }),
};

export const ResourceSummary = Type.Object(summaryProperties, { $id: 'ResourceSummary' });

export const ResourceDetail = Type.Object(
  {
    ...summaryProperties,
    description: Type.String(),
    provider_name_en: Type.String(),
    related_codes: Type.Array(Type.String()),
    spatial: Type.Array(Type.String()),
    temporal: Type.Optional(Type.Object({ start: Type.String(), end: Type.Optional(Type.String()) })),
    contact_point: ContactPoint,
    items: Type.Array(DataItemView),
    record_key: Type.Array(Type.String()),
  },
  { $id: 'ResourceDetail' },
);

const counts = Type.Record(Type.String(), Type.Integer());

export const ResourceList = Type.Object({
  items: Type.Array(Type.Ref('ResourceSummary')),
  facets: Type.Object({ provider: counts, theme: counts, sharing: counts, open: counts, format: counts, update_cycle: counts }),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

export const AgencyList = Type.Object({
  items: Type.Array(Type.Ref('Agency')),
  next_cursor: Type.Union([Type.String(), Type.Null()]),
});

export const ResourceHistory = Type.Object({
  items: Type.Array(
    Type.Object({
      version: Type.Integer(),
      change: Type.Unsafe<'created' | 'updated' | 'retired' | 'restored' | 'imported'>({
        type: 'string',
        enum: ['created', 'updated', 'retired', 'restored', 'imported'],
      }),
      fields: Type.Array(Type.String({ description: 'Top-level fields that changed' })),
      changed_at: Type.String({ format: 'date-time' }),
      sync_id: Type.Union([Type.Integer(), Type.Null()], { description: 'The catalog sync; null for a data import' }),
      detail: Type.Optional(
        Type.Object(
          { rows: Type.Integer(), skipped: Type.Integer(), sha256: Type.String(), seconds: Type.Number(), source: Type.String() },
          { description: 'For an import: rows loaded, rows skipped, checksum, time, source' },
        ),
      ),
    }),
  ),
});

export const SearchQuery = Type.Object(
  {
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Words in names, summaries and keywords (Chinese included)' })),
    provider: Type.Optional(Type.String({ maxLength: 32 })),
    theme: Type.Optional(literalUnion(themes, 'Theme')),
    sharing: Type.Optional(literalUnion(sharingTypes, 'Sharing attribute')),
    open: Type.Optional(literalUnion(openTypes, 'Open attribute')),
    keyword: Type.Optional(Type.String({ maxLength: 50 })),
    format: Type.Optional(literalUnion(resourceFormats, 'Resource format')),
    update_cycle: Type.Optional(literalUnion(updateCycles, 'Update cycle')),
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
    cursor: Type.Optional(Type.String({ maxLength: 200, description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);

export const PageQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const SyncReportView = Type.Object({
  sync_id: Type.Integer(),
  content_hash: Type.String(),
  created: Type.Integer(),
  updated: Type.Integer(),
  retired: Type.Integer(),
  unchanged: Type.Integer(),
  changes: Type.Array(
    Type.Object({
      kind: Type.String(),
      code: Type.String(),
      version: Type.Integer(),
      change: Type.String(),
      fields: Type.Array(Type.String()),
    }),
  ),
});
