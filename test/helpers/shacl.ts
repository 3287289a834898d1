import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import jsonld from 'jsonld';
import { Parser, Store, Writer, type Quad } from 'n3';
import SHACLValidator from 'rdf-validate-shacl';
import { projectRoot } from '../../src/paths.js';

/** The official DCAT-AP 3.0.1 shapes, copied into test/fixtures (see its ATTRIBUTION). */
export type DcatApShapes = 'dcat-ap-SHACL.ttl' | 'shapes.ttl' | 'range.ttl' | 'shapes_recommended.ttl';

const shapesFolder = join(projectRoot, 'test', 'fixtures', 'dcat-ap-3.0.1');
const shapesCache = new Map<DcatApShapes, Store>();

function shapesOf(file: DcatApShapes): Store {
  let shapes = shapesCache.get(file);
  if (!shapes) {
    shapes = new Store(parseTurtle(readFileSync(join(shapesFolder, file), 'utf8')));
    shapesCache.set(file, shapes);
  }
  return shapes;
}

export function parseTurtle(turtle: string): Quad[] {
  return new Parser({ format: 'text/turtle' }).parse(turtle);
}

/** A JSON-LD document's quads; a document that needs anything fetched fails. */
export async function quadsFromJsonLd(document: object): Promise<Quad[]> {
  const nquads = await jsonld.toRDF(document, {
    format: 'application/n-quads',
    documentLoader: async (url: string) => {
      throw new Error(`JSON-LD tried to load ${url}`);
    },
  });
  return new Parser({ format: 'application/n-quads' }).parse(nquads as string);
}

/** One line per quad, sorted: equal strings mean equal graphs when there are no blank nodes. */
export function canonicalNQuads(quads: Quad[]): string {
  const writer = new Writer({ format: 'N-Quads' });
  return quads
    .map((q) => writer.quadToString(q.subject, q.predicate, q.object, q.graph))
    .sort()
    .join('');
}

export interface ShaclResult {
  severity: string;
  focusNode: string;
  path: string;
  message: string;
}

export interface ShaclReport {
  conforms: boolean;
  results: ShaclResult[];
}

export async function validateDcatAp(shapes: DcatApShapes, data: Quad[]): Promise<ShaclReport> {
  const report = await new SHACLValidator(shapesOf(shapes)).validate(new Store(data));
  const results = report.results.map((result) => ({
    severity: localName(result.severity?.value ?? ''),
    focusNode: result.focusNode?.value ?? '',
    path: result.path?.value ?? '',
    message: result.message.map((message) => message.value).join('; '),
  }));
  return { conforms: report.conforms, results };
}

/** The results, one a line, for an assertion message. */
export function formatResults(results: ShaclResult[]): string {
  return results.map((r) => `${r.severity} ${r.focusNode} ${r.path}: ${r.message}`).join('\n');
}

function localName(iri: string): string {
  return iri.slice(iri.lastIndexOf('#') + 1);
}
