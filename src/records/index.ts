/**
 * Record storage: one table per hosted resource, made and altered from its catalog entry; imports
 * checked against the data items and swapped in atomically; typed filters and selections. The
 * layer every domain that holds records stands on (catalog sync, exchange, open data, demo); it
 * imports no domain.
 */
export { comparable, filterSql, InvalidFilter, item, MAX_IN_VALUES, operators, selected } from './filters.js';
export type { Filter, Operator, StoredRecord } from './filters.js';
export { divisionCodeProblem, formatProblem, residentIdCheckChar, residentIdProblem, usccCheckChar, usccProblem } from './identifiers.js';
export { checkRow, dropStrayStaging, formatOf, importFile, ImportRejected, loadRecords, readRecordFile, typedValue } from './import.js';
export type { BadRow, ImportReport, LoadOptions, RawRow, RecordFileFormat } from './import.js';
export { columnType, createTableStatements, migrateRecordTable, qualified, quoted, RECORDS_SCHEMA, recordTable } from './tables.js';
