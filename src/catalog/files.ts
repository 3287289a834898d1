import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Ajv2020, type DefinedError, type ValidateFunction } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { LineCounter, parseDocument } from 'yaml';
import { projectRoot } from '../paths.js';
import { checkCatalogRules, inFile, pointerTo, type CatalogEntry, type Issue } from './rules.js';
import type { Agency, Catalog, CatalogError, CatalogLoadResult, Resource } from '../model/catalog.js';

/**
 * Reading the catalog folder: `<dir>/<agency-code>/agency.yaml` and `<dir>/<agency-code>/<resource-code>.yaml`.
 * Every problem in every file is collected (YAML syntax, schema, then the rules in ./rules.ts), so that
 * one run shows an editor all there is to fix.
 */

// verbose: errors carry their schema, whose description makes a pattern or type error readable.
const ajv = new Ajv2020({ allErrors: true, useDefaults: true, verbose: true, strict: true });
ajvFormats.default(ajv);
const validateAgency = ajv.compile<Agency>(readSchema('agency.schema.json'));
const validateResource = ajv.compile<Resource>(readSchema('resource.schema.json'));

function readSchema(name: string): object {
  return JSON.parse(readFileSync(join(projectRoot, 'schemas', name), 'utf8')) as object;
}

const agencyFileName = 'agency.yaml';

interface CatalogFile {
  /** Relative to the catalog folder, `/`-separated. */
  file: string;
  folder: string;
  kind: 'agency' | 'resource';
}

/** Loads and checks the catalog under `dir`; never throws for a problem in the catalog's content. */
export async function loadCatalog(dir: string): Promise<CatalogLoadResult> {
  const listing = await listCatalogFiles(dir);
  const [agencies, resources] = await Promise.all([
    Promise.all(listing.files.filter((f) => f.kind === 'agency').map((f) => readEntry(dir, f, validateAgency))),
    Promise.all(listing.files.filter((f) => f.kind === 'resource').map((f) => readEntry(dir, f, validateResource))),
  ]);
  const errors = [
    ...listing.errors,
    ...agencies.flatMap((read) => read.errors),
    ...resources.flatMap((read) => read.errors),
    ...checkCatalogRules(
      agencies.map((read) => read.entry),
      resources.map((read) => read.entry),
    ),
  ];
  if (errors.length > 0) return { ok: false, errors: errors.sort(byFile) };
  const catalog: Catalog = {
    agencies: documentsByCode(agencies.map((read) => read.entry)),
    resources: documentsByCode(resources.map((read) => read.entry)),
  };
  return { ok: true, catalog };
}

/** One line: `file#pointer: message`. */
export function formatCatalogError(error: CatalogError): string {
  return `${error.file}#${error.pointer}: ${error.message}`;
}

async function listCatalogFiles(dir: string): Promise<{ files: CatalogFile[]; errors: CatalogError[] }> {
  const files: CatalogFile[] = [];
  const errors: CatalogError[] = [];
  let folders: string[];
  try {
    folders = (await visibleEntries(dir)).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch (cause) {
    const message = `cannot read the catalog folder: ${(cause as Error).message}`;
    return { files, errors: [{ file: '.', pointer: '', code: 'catalog_unreadable', message }] };
  }
  for (const folder of folders) {
    const entries = await visibleEntries(join(dir, folder));
    if (!entries.some((entry) => entry.isFile() && entry.name === agencyFileName)) {
      const message = `the folder ${folder}/ holds no ${agencyFileName} describing its agency`;
      errors.push({ file: `${folder}/${agencyFileName}`, pointer: '', code: 'missing_agency_file', message });
    }
    for (const entry of entries) {
      const file = `${folder}/${entry.name}`;
      if (entry.isFile() && entry.name.endsWith('.yaml')) {
        files.push({ file, folder, kind: entry.name === agencyFileName ? 'agency' : 'resource' });
      } else {
        const message = `an agency folder holds only ${agencyFileName} and <resource-code>.yaml files`;
        errors.push({ file, pointer: '', code: 'unexpected_file', message });
      }
    }
  }
  return { files, errors };
}

/** A folder's entries without hidden ones (.gitkeep, .DS_Store), sorted by name. */
async function visibleEntries(dir: string) {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries.filter((entry) => !entry.name.startsWith('.')).sort((a, b) => compareText(a.name, b.name));
}

async function readEntry<T>(
  dir: string,
  { file, folder, kind }: CatalogFile,
  validate: ValidateFunction<T>,
): Promise<{ entry: CatalogEntry<T>; errors: CatalogError[] }> {
  const parsed = parseYaml(await readFile(join(dir, file), 'utf8'));
  const code = codeOf(parsed.ok ? parsed.data : undefined, kind === 'agency' ? folder : basename(file, '.yaml'));
  if (!parsed.ok) return { entry: { file, folder, code }, errors: inFile(file, parsed.errors) };
  if (validate(parsed.data)) return { entry: { file, folder, code, document: parsed.data }, errors: [] };
  // An `if` error only repeats the `then`/`else` error under it.
  const schemaErrors = (validate.errors as DefinedError[]).filter((error) => error.keyword !== 'if');
  return { entry: { file, folder, code }, errors: inFile(file, schemaErrors.map(schemaError)) };
}

type ParsedYaml = { ok: true; data: unknown } | { ok: false; errors: Issue[] };

function parseYaml(text: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  if (document.errors.length > 0) {
    const errors = document.errors.map((error) => {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      return yamlError(`line ${line}, column ${col}: ${error.message}`);
    });
    return { ok: false, errors };
  }
  try {
    return { ok: true, data: document.toJS() };
  } catch (cause) {
    // toJS refuses documents whose aliases expand without bound ("billion laughs").
    return { ok: false, errors: [yamlError((cause as Error).message)] };
  }
}

function yamlError(message: string): Issue {
  return { pointer: '', code: 'yaml_syntax', message };
}

/**
 * The code a file stands for, even when it is broken, so that one broken file does not make every
 * reference to it unknown: the code it declares, else the one its place says (folder or file name).
 */
function codeOf(data: unknown, codeOfPlace: string): string {
  const declared = typeof data === 'object' && data !== null && 'code' in data ? data.code : undefined;
  return typeof declared === 'string' ? declared : codeOfPlace;
}

function schemaError(error: DefinedError): Issue {
  switch (error.keyword) {
    case 'required':
      return {
        pointer: pointerTo(error.instancePath, error.params.missingProperty),
        code: 'schema',
        message: 'is required',
      };
    case 'additionalProperties':
      return {
        pointer: pointerTo(error.instancePath, error.params.additionalProperty),
        code: 'schema',
        message: 'is not a property this file may have',
      };
    case 'enum':
      return {
        pointer: error.instancePath,
        code: 'schema',
        message: `must be one of: ${error.params.allowedValues.join(', ')}`,
      };
    case 'type':
    case 'pattern': {
      // The schema's description says what the pattern or type stands for (and that codes need quotes in YAML).
      const description = (error.parentSchema as { description?: string } | undefined)?.description;
      const message = description ? `${error.message} (${description})` : `${error.message}`;
      return { pointer: error.instancePath, code: 'schema', message };
    }
    default:
      return { pointer: error.instancePath, code: 'schema', message: `${error.message}` };
  }
}

function documentsByCode<T extends { code: string }>(entries: CatalogEntry<T>[]): T[] {
  return entries
    .map((entry) => entry.document)
    .filter((document): document is T => document !== undefined)
    .sort((a, b) => compareText(a.code, b.code));
}

function byFile(a: CatalogError, b: CatalogError): number {
  return compareText(a.file, b.file);
}

/** Code-unit order: the same on every machine, whatever its locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
