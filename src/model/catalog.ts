/**
 * The catalog (政务信息资源目录) as the gateway holds it once loaded: agencies and their resources.
 * These shapes mirror `schemas/agency.schema.json` and `schemas/resource.schema.json`, with the schemas'
 * defaults applied; the vocabularies below are the schemas' enums (a test keeps the two in step).
 */

export const agencyLevels = ['national', 'province', 'city', 'county'] as const;
export type AgencyLevel = (typeof agencyLevels)[number];

export const themes = [
  'education',
  'population',
  'economy',
  'government',
  'regions',
  'environment',
  'social',
  'health',
  'transport',
  'science',
  'agriculture',
  'energy',
  'justice',
] as const;
export type Theme = (typeof themes)[number];

/** The EU Publications Office data-theme vocabulary that DCAT-AP's `dcat:theme` takes its values from. */
export const euDataThemeVocabulary = 'http://publications.europa.eu/resource/authority/data-theme/';

export type EuDataTheme =
  | 'AGRI'
  | 'ECON'
  | 'EDUC'
  | 'ENER'
  | 'ENVI'
  | 'GOVE'
  | 'HEAL'
  | 'INTR'
  | 'JUST'
  | 'REGI'
  | 'SOCI'
  | 'TECH'
  | 'TRAN';

/** Each catalog theme's EU data theme (population has no theme of its own there: it is SOCI). */
export const euDataThemes: Readonly<Record<Theme, EuDataTheme>> = {
  education: 'EDUC',
  population: 'SOCI',
  economy: 'ECON',
  government: 'GOVE',
  regions: 'REGI',
  environment: 'ENVI',
  social: 'SOCI',
  health: 'HEAL',
  transport: 'TRAN',
  science: 'TECH',
  agriculture: 'AGRI',
  energy: 'ENER',
  justice: 'JUST',
};

export const resourceFormats = ['database', 'spreadsheet', 'document', 'spatial', 'image', 'stream'] as const;
export type ResourceFormat = (typeof resourceFormats)[number];

export const updateCycles = ['realtime', 'daily', 'weekly', 'monthly', 'quarterly', 'yearly', 'irregular'] as const;
export type UpdateCycle = (typeof updateCycles)[number];

export const itemTypes = ['string', 'integer', 'number', 'boolean', 'date', 'datetime'] as const;
export type ItemType = (typeof itemTypes)[number];

export const itemFormats = [
  'cn-resident-id',
  'cn-uscc',
  'cn-division-code',
  'wgs84-longitude',
  'wgs84-latitude',
  'email',
  'phone',
] as const;
export type ItemFormat = (typeof itemFormats)[number];

/** 共享属性: 无条件共享, 有条件共享, 不予共享. */
export const sharingTypes = ['unconditional', 'conditional', 'none'] as const;
export type SharingType = (typeof sharingTypes)[number];

/** 开放属性: 无条件开放, 有条件开放, 不予开放. */
export const openTypes = ['unconditional', 'conditional', 'none'] as const;
export type OpenType = (typeof openTypes)[number];

export const sharingMethods = ['read', 'query', 'verify'] as const;
export type SharingMethod = (typeof sharingMethods)[number];

export interface ContactPoint {
  name: string;
  email: string;
  phone?: string;
}

/** A provider agency (提供部门): `catalog/<code>/agency.yaml`. */
export interface Agency {
  code: string;
  /** Upper-case abbreviation used inside its resource codes, e.g. `EDU` in `330000-EDU-00001`. */
  abbr: string;
  name: string;
  name_en: string;
  level: AgencyLevel;
  /** GB/T 2260 division code of the region it serves, e.g. `330000`. */
  region: string;
  /** GB 32100 unified social credit code. */
  uscc?: string;
  homepage?: string;
  contact_point: ContactPoint;
}

/** A data item (信息项): one field of a resource's records. */
export interface DataItem {
  name: string;
  title: string;
  title_en: string;
  type: ItemType;
  format?: ItemFormat;
  personal: boolean;
  sensitive: boolean;
  required: boolean;
  filterable: boolean;
  max_length?: number;
  description?: string;
}

/** 共享属性: whether and how other agencies may use the resource. */
export interface SharingAttribute {
  type: SharingType;
  conditions?: string;
  legal_basis?: string;
  /** Empty exactly when `type` is `none`. */
  methods: SharingMethod[];
}

/** 开放属性: whether and how the public may use the resource. */
export interface OpenAttribute {
  type: OpenType;
  conditions?: string;
  legal_basis?: string;
  /** Present whenever `type` is not `none`. */
  license?: string;
}

export interface Temporal {
  start: string;
  end?: string;
}

/** A resource (信息资源): `catalog/<provider>/<code>.yaml`. */
export interface Upstream {
  url: string;
  /** Environment variable with the provider's credential (a bearer token). */
  credential_env?: string;
  timeout_ms: number;
}

export interface Resource {
  /** `{provider region}-{provider abbr}-{5-digit serial}`, e.g. `330000-EDU-00001`. */
  code: string;
  name: string;
  title: string;
  summary: string;
  description: string;
  /** The provider agency's code, also the resource's folder. */
  provider: string;
  theme: Theme;
  format: ResourceFormat;
  update_cycle: UpdateCycle;
  /** RFC 3339 full-date. */
  published: string;
  keywords: string[];
  related_codes?: string[];
  /** Division codes the resource covers. */
  spatial?: string[];
  temporal?: Temporal;
  /** When absent, the provider agency's contact point answers for the resource. */
  contact_point?: ContactPoint;
  items: DataItem[];
  /** Names of the items that together identify a record. */
  record_key: string[];
  sharing: SharingAttribute;
  open: OpenAttribute;
  /** A proxied resource: the provider's own endpoint answers, the gateway governs and audits. */
  upstream?: Upstream;
}

export interface Catalog {
  /** Sorted by code. */
  agencies: Agency[];
  /** Sorted by code. */
  resources: Resource[];
}

export type CatalogErrorCode =
  | 'catalog_unreadable'
  | 'unexpected_file'
  | 'missing_agency_file'
  | 'yaml_syntax'
  | 'schema'
  | 'duplicate_code'
  | 'agency_folder_mismatch'
  | 'provider_folder_mismatch'
  | 'file_name_mismatch'
  | 'unknown_provider'
  | 'code_pattern'
  | 'duplicate_item'
  | 'unknown_key_item'
  | 'missing_conditions'
  | 'missing_legal_basis'
  | 'missing_license'
  | 'unknown_related_code';

export interface CatalogError {
  /** Path relative to the catalog folder, with `/` separators. */
  file: string;
  /** RFC 6901 JSON pointer into the file's document; `''` for the whole file. */
  pointer: string;
  code: CatalogErrorCode;
  message: string;
}

export type CatalogLoadResult = { ok: true; catalog: Catalog } | { ok: false; errors: CatalogError[] };
