import { basename } from 'node:path';
import type { Agency, CatalogError, CatalogErrorCode, Resource } from '../model/catalog.js';

/**
 * The catalog's rules beyond what a JSON Schema can say about one file: codes unique across files,
 * resource codes built from their provider's region and abbreviation, files where their codes say,
 * record keys made of the resource's own items, and attributes that carry their reasons.
 */

/** A catalog file as the rules see it. */
export interface CatalogEntry<T> {
  /** Relative to the catalog folder, `/`-separated. */
  file: string;
  /** The agency folder it lies in. */
  folder: string;
  /** The code the file stands for, known even when the schema rejects the file. */
  code: string;
  /** The document, present only when the schema accepted it. */
  document?: T;
}

/** An error found inside a file, before it is told which file. */
export type Issue = Omit<CatalogError, 'file'>;

interface CatalogIndex {
  /** Every agency code, of broken files too, so that one broken agency file does not make its provider unknown. */
  agencyCodes: Set<string>;
  /** Agencies whose files the schema accepted, by code. */
  agencies: Map<string, Agency>;
  /** Every resource code, of broken files too. */
  resourceCodes: Set<string>;
}

export function checkCatalogRules(
  agencies: CatalogEntry<Agency>[],
  resources: CatalogEntry<Resource>[],
): CatalogError[] {
  const index: CatalogIndex = {
    agencyCodes: codesOf(agencies),
    agencies: new Map(agencies.flatMap(({ document }) => (document ? [[document.code, document] as const] : []))),
    resourceCodes: codesOf(resources),
  };
  return [
    ...duplicateCodes(agencies, 'agency'),
    ...duplicateCodes(resources, 'resource'),
    ...agencies.flatMap(({ file, folder, document }) =>
      document ? inFile(file, checkAgencyFolder(document, folder)) : [],
    ),
    ...resources.flatMap(({ file, folder, document }) =>
      document
        ? inFile(file, [
            ...checkResourceFileName(document, file),
            ...checkProvider(document, folder, index),
            ...checkItemNames(document),
            ...checkRecordKey(document),
            ...checkAttributes(document),
            ...checkRelatedCodes(document, index),
          ])
        : [],
    ),
  ];
}

/** RFC 6901: `~` and `/` inside a reference token are escaped. */
export function pointerTo(base: string, token: string): string {
  return `${base}/${token.replaceAll('~', '~0').replaceAll('/', '~1')}`;
}

function codesOf(entries: CatalogEntry<unknown>[]): Set<string> {
  return new Set(entries.map(({ code }) => code));
}

export function inFile(file: string, issues: Issue[]): CatalogError[] {
  return issues.map((issue) => ({ file, ...issue }));
}

function issue(pointer: string, code: CatalogErrorCode, message: string): Issue {
  return { pointer, code, message };
}

/** 同一事项、同一标准、同一编码: each file that shares a code hears of the others. */
function duplicateCodes(entries: CatalogEntry<unknown>[], kind: 'agency' | 'resource'): CatalogError[] {
  const filesByCode = new Map<string, string[]>();
  for (const { code, file } of entries) {
    filesByCode.set(code, [...(filesByCode.get(code) ?? []), file]);
  }
  return [...filesByCode].flatMap(([code, files]) =>
    files.length < 2
      ? []
      : files.map((file) => {
          const others = files.filter((other) => other !== file).join(', ');
          return { file, ...issue('/code', 'duplicate_code', `${kind} code ${code} is also declared in ${others}`) };
        }),
  );
}

function checkAgencyFolder(agency: Agency, folder: string): Issue[] {
  if (agency.code === folder) return [];
  const message = `the agency ${agency.code} is described in ${agency.code}/agency.yaml, not in ${folder}/`;
  return [issue('/code', 'agency_folder_mismatch', message)];
}

function checkResourceFileName(resource: Resource, file: string): Issue[] {
  const expected = `${resource.code}.yaml`;
  if (basename(file) === expected) return [];
  return [issue('/code', 'file_name_mismatch', `the resource ${resource.code} belongs in a file named ${expected}`)];
}

function checkProvider(resource: Resource, folder: string, index: CatalogIndex): Issue[] {
  const { provider, code } = resource;
  if (!index.agencyCodes.has(provider)) {
    const message = `no agency has the code ${provider} (it would be described in ${provider}/agency.yaml)`;
    return [issue('/provider', 'unknown_provider', message)];
  }
  const issues: Issue[] = [];
  if (folder !== provider) {
    const message = `the provider is ${provider}, so the file belongs in ${provider}/, not in ${folder}/`;
    issues.push(issue('/provider', 'provider_folder_mismatch', message));
  }
  const agency = index.agencies.get(provider);
  const prefix = agency && `${agency.region}-${agency.abbr}-`;
  if (prefix && !code.startsWith(prefix)) {
    const message = `a resource of ${provider} has a code starting with ${prefix} (its region and abbreviation)`;
    issues.push(issue('/code', 'code_pattern', message));
  }
  return issues;
}

function checkItemNames(resource: Resource): Issue[] {
  const firstIndex = new Map<string, number>();
  return resource.items.flatMap(({ name }, i) => {
    const first = firstIndex.get(name);
    if (first === undefined) {
      firstIndex.set(name, i);
      return [];
    }
    return [issue(`/items/${i}/name`, 'duplicate_item', `the data item ${name} is already defined at /items/${first}`)];
  });
}

function checkRecordKey(resource: Resource): Issue[] {
  const names = new Set(resource.items.map(({ name }) => name));
  return resource.record_key.flatMap((name, i) =>
    names.has(name) ? [] : [issue(`/record_key/${i}`, 'unknown_key_item', `${name} is not one of the data items`)],
  );
}

/**
 * A conditional attribute says what its conditions are and a refusal says why, each on a legal basis
 * (国发〔2016〕51号 for sharing, the open-data rules for opening); open data always carries a licence.
 */
function checkAttributes(resource: Resource): Issue[] {
  const issues: Issue[] = [];
  for (const attribute of ['sharing', 'open'] as const) {
    const { type, conditions, legal_basis } = resource[attribute];
    if (type === 'unconditional') continue;
    const [reasons, basisOf] =
      type === 'conditional' ? ['what must hold to get the data', 'conditions'] : ['why it is withheld', 'refusal'];
    if (conditions === undefined) {
      const message = `${attribute} type ${type} needs conditions: ${reasons}`;
      issues.push(issue(`/${attribute}/conditions`, 'missing_conditions', message));
    }
    if (legal_basis === undefined) {
      const message = `${attribute} type ${type} needs the legal basis of its ${basisOf}`;
      issues.push(issue(`/${attribute}/legal_basis`, 'missing_legal_basis', message));
    }
  }
  if (resource.open.type !== 'none' && resource.open.license === undefined) {
    const message = `open type ${resource.open.type} needs the licence the data is published under`;
    issues.push(issue('/open/license', 'missing_license', message));
  }
  return issues;
}

function checkRelatedCodes(resource: Resource, index: CatalogIndex): Issue[] {
  return (resource.related_codes ?? []).flatMap((code, i) =>
    index.resourceCodes.has(code)
      ? []
      : [issue(`/related_codes/${i}`, 'unknown_related_code', `no resource has the code ${code}`)],
  );
}
